{-# LANGUAGE CPP #-}
{-# LANGUAGE OverloadedStrings #-}
-- | A Warp program that listens where it is told, built unchanged against
-- libwarpcore (build/listen-hs) and against Warp itself (build/listen-warp,
-- with -DWARP): the import below is the only difference. The Haskell tests
-- run both and compare what each accepts.
--
--   build/listen-hs --host '*6' --port 8080   runSettings (setHost, setPort)
--   build/listen-hs --tcp-socket              runSettingsSocket on openFreePort's socket
--   build/listen-hs --unix /tmp/app.sock      runSettingsSocket on a Unix socket it bound
--   curl --unix-socket /tmp/app.sock http://x/   → hello <socket: >
--
-- Every request is answered "hello " and the client's address without its
-- port. Prints "listening on PORT" (or the socket path) once it listens,
-- stops on SIGTERM or SIGINT (exit 0); a Unix socket file is removed then.
--
-- Build: make haskell.
module Main (main) where

import Control.Exception (bracket)
import qualified Data.ByteString.Lazy.Char8 as L8
import Data.Streaming.Network (bindPath)
import Data.String (fromString)
import qualified Network.HTTP.Types as H
import Network.Socket (SockAddr (..), close)
import Network.Wai (Application, remoteHost, responseLBS)
#ifdef WARP
import Network.Wai.Handler.Warp
#else
import Network.Wai.Handler.WarpCore
#endif
import System.Directory (removeFile)
import System.Environment (getArgs)
import System.Exit (exitFailure)
import System.IO (hFlush, hPutStrLn, stderr, stdout)
import System.Posix.Signals (Handler (Catch), installHandler, sigINT, sigTERM)

main :: IO ()
main = do
  args <- getArgs
  let settings announce =
        setBeforeMainLoop (putStrLn ("listening on " ++ announce) >> hFlush stdout)
          . setInstallShutdownHandler (\stop -> mapM_ (\s -> installHandler s (Catch stop) Nothing) [sigTERM, sigINT])
          $ defaultSettings
  case args of
    ["--host", host, "--port", port] ->
      runSettings (setHost (fromString host) . setPort (read port) $ settings port) app
    ["--tcp-socket"] ->
      bracket openFreePort (close . snd) $ \(port, sock) ->
        runSettingsSocket (settings (show port)) sock app
    ["--unix", path] ->
      bracket (bindPath path) (\sock -> close sock >> removeFile path) $ \sock ->
        runSettingsSocket (settings path) sock app
    _ -> do
      hPutStrLn stderr "usage: listen-hs (--host H --port N | --tcp-socket | --unix PATH)"
      exitFailure

app :: Application
app req respond =
  respond $ responseLBS H.ok200 [(H.hContentType, "text/plain")] ("hello " <> L8.pack (client (remoteHost req)))
  where
    client (SockAddrInet _ a) = show (SockAddrInet 0 a)
    client (SockAddrInet6 _ f a s) = show (SockAddrInet6 0 f a s)
    client other = show other
