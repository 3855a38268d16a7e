{-# LANGUAGE OverloadedStrings #-}
{-# LANGUAGE ScopedTypeVariables #-}
-- | Shared helpers: servers on 127.0.0.1 port 0, an HTTP client, a raw socket
-- client for what http-client cannot send, and time bounds.
module Util
  ( bounded
  , boundedFor
  , manager
  , get
  , getWith
  , post
  , request
  , rawExchange
  , rawConnect
  , readUntilClosed
  , readResponseHead
  , withRawApi
  , localConfig
  , runChild
  , threadPolicies
  ) where

import System.Environment (getEnvironment, getExecutablePath)
import System.Exit (ExitCode)
import System.Process (CreateProcess (..), proc, readCreateProcessWithExitCode)

import Control.Exception (IOException, bracket, throwIO, try)
import Control.Monad (forM)
import qualified Data.ByteString as B
import qualified Data.ByteString.Lazy as L
import Network.HTTP.Client (Manager, Response)
import qualified Network.HTTP.Client as C
import qualified Network.HTTP.Types as H
import Network.Socket
import qualified Network.Socket.ByteString as NSB
import System.Directory (listDirectory)
import System.FilePath ((</>))
import System.IO.Unsafe (unsafePerformIO)
import System.Timeout (timeout)

import qualified Network.WarpCore as WC

-- | Fails a test that takes longer than 60 s instead of hanging the suite.
bounded :: IO a -> IO a
bounded act = do
  r <- timeout (60 * 1000000) act
  maybe (throwIO (userError "test took longer than 60 s")) pure r

-- | 'bounded' with another limit, in seconds (for the large uploads).
boundedFor :: Int -> IO a -> IO a
boundedFor secs act = do
  r <- timeout (secs * 1000000) act
  maybe (throwIO (userError ("test took longer than " ++ show secs ++ " s"))) pure r

manager :: Manager
manager = unsafePerformIO (C.newManager C.defaultManagerSettings {C.managerResponseTimeout = C.responseTimeoutMicro (30 * 1000000)})
{-# NOINLINE manager #-}

request :: Int -> B.ByteString -> B.ByteString -> [H.Header] -> L.ByteString -> IO (Response L.ByteString)
request port method path hs body = do
  base <- C.parseRequest ("http://127.0.0.1:" ++ show port)
  let req = base {C.method = method, C.path = path, C.requestHeaders = hs, C.requestBody = C.RequestBodyLBS body}
  C.httpLbs req manager

get :: Int -> B.ByteString -> IO (Response L.ByteString)
get port p = request port "GET" p [] ""

getWith :: Int -> B.ByteString -> [H.Header] -> IO (Response L.ByteString)
getWith port p hs = request port "GET" p hs ""

post :: Int -> B.ByteString -> L.ByteString -> IO (Response L.ByteString)
post port p = request port "POST" p []

rawConnect :: Int -> IO Socket
rawConnect port = do
  s <- socket AF_INET Stream defaultProtocol
  connect s (SockAddrInet (fromIntegral port) (tupleToHostAddress (127, 0, 0, 1)))
  pure s

-- | Sends bytes, half-closes nothing, reads until the server closes or
-- `enough` says the bytes read so far are complete.
rawExchange :: Int -> B.ByteString -> (B.ByteString -> Bool) -> IO B.ByteString
rawExchange port bytes enough =
  bracket (rawConnect port) close $ \s -> do
    NSB.sendAll s bytes
    let loop acc = do
          chunk <- NSB.recv s 65536
          let acc' = acc <> chunk
          if B.null chunk || enough acc' then pure acc' else loop acc'
    loop B.empty

readUntilClosed :: Socket -> IO B.ByteString
readUntilClosed s = go []
  where
    go acc = do
      chunk <- NSB.recv s 65536
      if B.null chunk then pure (B.concat (reverse acc)) else go (chunk : acc)

-- | Reads until the end of a response head.
readResponseHead :: Socket -> IO B.ByteString
readResponseHead s = go B.empty
  where
    go acc
      | "\r\n\r\n" `B.isInfixOf` acc = pure acc
      | otherwise = do
          chunk <- NSB.recv s 4096
          if B.null chunk then pure acc else go (acc <> chunk)

localConfig :: WC.Config
localConfig = WC.defaultConfig {WC.configListen = "127.0.0.1:0", WC.configWorkers = 2}

-- | A server on the safe API for the duration of an action, given its port.
withRawApi :: WC.Config -> WC.Handler -> (Int -> IO a) -> IO a
withRawApi cfg h act = WC.withServer cfg h (act . WC.serverPort)

-- | Runs this test binary again as the Child scenario `name` (with RTS
-- options first, if any), for at most `secs` seconds: Nothing when it took
-- longer (it is then killed: readCreateProcessWithExitCode cleans up the
-- process it started), else its exit code, stdout and stderr.
runChild :: Int -> [String] -> String -> [String] -> IO (Maybe (ExitCode, String, String))
runChild secs rts name args = do
  self <- getExecutablePath
  environment <- getEnvironment
  let rtsArgs = if null rts then [] else "+RTS" : rts ++ ["-RTS"]
      p = (proc self (rtsArgs ++ args)) {env = Just (("WARPCORE_HS_CHILD", name) : filter ((/= "WARPCORE_HS_CHILD") . fst) environment)}
  timeout (secs * 1000000) (readCreateProcessWithExitCode p "")

-- | (name, scheduling policy) of every thread of this process (/proc, Linux).
threadPolicies :: IO [(String, Int)]
threadPolicies = do
  tids <- listDirectory "/proc/self/task"
  fmap concat $ forM tids $ \tid -> do
    r <- try $ do
      name <- takeWhile (/= '\n') <$> readFile' ("/proc/self/task" </> tid </> "comm")
      stat <- readFile' ("/proc/self/task" </> tid </> "stat")
      -- Field 41 is the policy; the name (field 2) is parenthesised and may hold spaces.
      let fields = words (drop 2 (dropWhile (/= ')') stat))
      pure (name, read (fields !! 38))
    pure (either (\(_ :: IOException) -> []) pure r)
  where
    readFile' path = do
      c <- readFile path
      length c `seq` pure c
