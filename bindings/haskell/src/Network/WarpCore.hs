-- | libwarpcore from Haskell: a multi-core HTTP/1.1 server engine (Rust,
-- behind a C API) that hands each request to a Haskell handler.
--
-- @
-- import qualified Network.WarpCore as WC
--
-- main :: IO ()
-- main = WC.run WC.defaultConfig {WC.configListen = "127.0.0.1:8080"} hello (\\_ -> pure ())
--   where
--     hello _req res = WC.respond res 200 [("Content-Type", "text/plain")] "Hello, World!"
-- @
--
-- Link programs with @-threaded@. Each request runs in its own green thread
-- and answers through its 'Responder'; the library's event loops never wait
-- for Haskell code (see "Network.WarpCore.Server" for how). For WAI
-- applications use "Network.Wai.Handler.WarpCore".
module Network.WarpCore
  ( -- * Servers
    Config (..)
  , defaultConfig
  , Dispatch (..)
  , WorkerThreads (..)
  , Timeout (..)
  , ProxyProtocol (..)
  , Connection (..)
  , Fork (..)
  , Handler
  , Server
  , start
  , shutdown
  , wait
  , close
  , withServer
  , run
  , serverPort
  , serverWorkers
  , serverListeners
  , reload
  , stats
  , fileCacheStats
  , shutdownReport
  , reopenLogs
  , Stats (..)
  , FileCacheStats (..)
  , ShutdownReport (..)
    -- * TLS
  , TLSConfig (..)
  , Certificate (..)
  , ClientAuth (..)
  , tlsConfig
    -- * Requests
  , Request (..)
  , TLSInfo (..)
  , requestHeader
    -- * Request bodies that stream
  , BodyReader
  , readChunk
  , readChunkUpTo
  , discardBody
  , releaseBody
  , bodyAsked
  , chunkSize
    -- * Responses
  , Responder
  , ResponderState (..)
  , responderState
  , respond
  , respondLazy
  , respondBuilder
  , respondFile
  , responderInline
  , startStream
  , writeStream
  , writeStreamBuilder
  , endStream
  , abortResponse
  , setReason
  , pauseTimeout
    -- * Connections that switch protocols
  , Upgraded
  , takeOver
  , upgrade
  , withTakeOver
  , withUpgrade
  , readUpgraded
  , writeUpgraded
  , shutdownWrite
  , closeUpgraded
  , freeUpgraded
  , setUpgradedIdleTimeout
  , upgradedDraining
    -- * Errors
  , WarpCoreError (..)
  , resultName
    -- * Library
  , version
  ) where

import Network.WarpCore.Body
import Network.WarpCore.Error
import Network.WarpCore.Request
import Network.WarpCore.Response
import Network.WarpCore.Server
import Network.WarpCore.TLS
import Network.WarpCore.Upgrade
