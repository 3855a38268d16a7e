{-# LANGUAGE OverloadedStrings #-}
{-# LANGUAGE ScopedTypeVariables #-}
-- | Programs the test binary runs as a child of itself (WARPCORE_HS_CHILD),
-- for what ends a process when it goes wrong: a crash, an abort at exit, a
-- hang. 'SafetySpec' runs them through 'Util.runChild' and reads the exit
-- status and output.
module Child (runChildScenario) where

import Control.Concurrent
import Control.Exception
import Control.Monad (forM_, forever, replicateM, replicateM_, unless, void, when)
import qualified Data.ByteString as B
import qualified Data.ByteString.Char8 as B8
import Data.IORef
import Data.List (isInfixOf)
import Foreign.C.Types (CInt (..), CUInt (..))
import Network.Socket (Socket)
import qualified Network.Socket as N
import qualified Network.Socket.ByteString as NSB
import System.Exit (exitFailure)
import System.IO (hFlush, stdout)
import System.Mem (performMajorGC)

import qualified Network.WarpCore as WC
import qualified Network.WarpCore.Raw as Raw
import Util (localConfig, rawConnect)

foreign import ccall safe "usleep" c_usleep :: CUInt -> IO CInt

say :: String -> IO ()
say line = putStrLn line >> hFlush stdout

text :: [(B.ByteString, B.ByteString)]
text = [("Content-Type", "text/plain")]

hello :: WC.Handler
hello _ res = WC.respond res 200 text "hello"

-- | Runs the named scenario; its exit status and output are the result.
runChildScenario :: String -> [String] -> IO ()
runChildScenario name args = case (name, args) of
  ("closed-server", _) -> closedServer
  ("exit-in-handler", _) -> exitInHandler
  ("exit-in-log", [mode]) -> exitInLog (read mode)
  ("exit-traffic", [mode]) -> exitTraffic (read mode)
  ("shutdown-in-handler", _) -> shutdownInHandler
  ("body-rss", _) -> bodyRss
  ("error-messages", [threads, calls]) -> errorMessages (read threads) (read calls)
  _ -> say ("unknown child scenario " ++ show (name, args)) >> exitFailure

-- Item 1: every call on a server that escaped withServer throws; a thread
-- polling stats while another closes ends with the same error, no crash.
closedServer :: IO ()
closedServer = do
  s <- WC.withServer localConfig hello pure
  let calls =
        [ ("stats", void (WC.stats s))
        , ("reload", WC.reload s localConfig hello)
        , ("fileCacheStats", void (WC.fileCacheStats s))
        , ("shutdownReport", void (WC.shutdownReport s))
        , ("reopenLogs", WC.reopenLogs s)
        ]
  forM_ calls $ \(call, act) -> do
    r <- try act
    case r of
      Left (e :: WC.WarpCoreError)
        | WC.errorResult e == Raw.resultInvalidState && "closed" `isInfixOf` WC.errorMessage e -> say ("refused " ++ call)
      Left e -> say ("wrong error from " ++ call ++ ": " ++ show e) >> exitFailure
      Right () -> say (call ++ " ran on a closed server") >> exitFailure
  -- shutdown, wait and close stay harmless.
  WC.shutdown s 0 >> WC.wait s >> WC.close s
  replicateM_ 20 $ do
    server <- WC.start localConfig hello
    polls <- newIORef (0 :: Int)
    done <- newEmptyMVar
    _ <- forkIO $ do
      let loop = do
            r <- try (WC.stats server)
            case r of
              Right _ -> modifyIORef' polls (+ 1) >> loop
              Left (e :: WC.WarpCoreError) -> putMVar done (WC.errorResult e)
      loop
    -- Let the poller get going before closing.
    let started = readIORef polls >>= \n -> unless (n > 10) (yield >> started)
    started
    WC.close server
    code <- takeMVar done
    unless (code == Raw.resultInvalidState) $ say ("poller ended with " ++ show code) >> exitFailure
  say "polling during close: ok"

-- A connection that sends one request and is left open.
sendRequest :: Int -> B.ByteString -> IO Socket
sendRequest port path = do
  sock <- rawConnect port
  NSB.sendAll sock ("GET " <> path <> " HTTP/1.1\r\nHost: x\r\n\r\n")
  pure sock

-- Item 2: main returns while an InCallback handler is running on a worker.
exitInHandler :: IO ()
exitInHandler = do
  entered <- newEmptyMVar
  let handler _ res = do
        void (tryPutMVar entered ())
        -- Still inside the callback when main returns.
        threadDelay 300000
        WC.respond res 200 text "late"
  s <- WC.start localConfig {WC.configDispatch = WC.InCallback} handler
  _ <- sendRequest (WC.serverPort s) "/"
  takeMVar entered
  say "returning from main inside a handler"

-- Item 2: main returns while the access-log callback is running.
exitInLog :: WC.Dispatch -> IO ()
exitInLog mode = do
  entered <- newEmptyMVar
  let sink _ = do
        void (tryPutMVar entered ())
        threadDelay 300000
  s <- WC.start localConfig {WC.configDispatch = mode, WC.configAccessLog = Just sink} hello
  _ <- sendRequest (WC.serverPort s) "/"
  takeMVar entered
  say "returning from main inside the access log"

-- Item 2: main returns while clients keep sending.
exitTraffic :: WC.Dispatch -> IO ()
exitTraffic mode = do
  served <- newIORef (0 :: Int)
  enough <- newEmptyMVar
  let handler _ res = do
        n <- atomicModifyIORef' served (\k -> (k + 1, k + 1))
        when (n == 300) $ void (tryPutMVar enough ())
        WC.respond res 200 text "hello"
      cfg = localConfig {WC.configDispatch = mode, WC.configAccessLog = Just (\_ -> pure ()), WC.configErrorLog = Just (\_ _ -> pure ())}
  s <- WC.start cfg handler
  let request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
      client = forever $ handle (\(_ :: IOException) -> pure ()) $
        bracket (rawConnect (WC.serverPort s)) N.close $ \sock ->
          replicateM_ 50 (NSB.sendAll sock request >> NSB.recv sock 4096)
  replicateM_ 6 (forkIO client)
  takeMVar enough
  say "returning from main under traffic"

-- Item 6: shutdown from inside an InCallback handler is refused at once.
shutdownInHandler :: IO ()
shutdownInHandler = do
  server <- newEmptyMVar
  outcome <- newEmptyMVar
  let handler _ res = do
        s <- readMVar server
        r <- try (WC.shutdown s 0)
        c <- try (WC.close s)
        l <- try (WC.reload s localConfig hello)
        let describe :: Either WC.WarpCoreError () -> String
            describe (Left e) | WC.errorResult e == Raw.resultInvalidState = "refused"
            describe (Left e) = show e
            describe (Right ()) = "returned"
        putMVar outcome (map describe [r, c, l])
        WC.respond res 200 text "after"
  s <- WC.start localConfig {WC.configDispatch = WC.InCallback} handler
  putMVar server s
  sock <- sendRequest (WC.serverPort s) "/"
  takeMVar outcome >>= say . unwords
  reply <- NSB.recv sock 4096
  say (if "after" `B.isSuffixOf` reply then "answered" else "no answer")
  -- From another thread it works.
  WC.shutdown s 1000
  WC.close s
  say "closed"

-- Item 7: resident memory after 300 POSTs of 256 KiB whose bodies are dropped.
bodyRss :: IO ()
bodyRss = do
  let size = 256 * 1024
      body = B.replicate size 120
      request = B8.pack ("POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: " ++ show size ++ "\r\n\r\n") <> body
      handler req res = WC.respond res 200 text (B8.pack (show (B.length (WC.requestBody req))))
  WC.withServer localConfig {WC.configMaxBodySize = Just (1024 * 1024)} handler $ \s -> do
    sock <- rawConnect (WC.serverPort s)
    let post = do
          NSB.sendAll sock request
          reply <- NSB.recv sock 4096
          unless (B8.pack (show size) `B.isSuffixOf` reply) $ say ("bad reply " ++ show reply) >> exitFailure
    replicateM_ 5 post
    performMajorGC
    before <- rssKiB
    replicateM_ 300 post
    after <- rssKiB
    say ("rss growth KiB " ++ show (after - before))

rssKiB :: IO Int
rssKiB = do
  status <- readFile "/proc/self/status"
  case [read (words l !! 1) | l <- lines status, "VmRSS:" `isInfixOf` l] of
    n : _ -> length status `seq` pure n
    [] -> fail "no VmRSS"

-- Item 8: failing calls from many threads, while other threads make the
-- runtime hand capabilities between OS threads: every error carries its
-- own call's message.
errorMessages :: Int -> Int -> IO ()
errorMessages threads calls = do
  wrong <- newIORef (0 :: Int)
  stop <- newEmptyMVar
  let sleeper = forever (c_usleep 50)
  sleepers <- replicateM 4 (forkIO (void sleeper))
  done <- replicateM threads $ do
    v <- newEmptyMVar
    _ <- forkIO $ flip finally (putMVar v ()) $ forM_ [1 .. calls] $ \i -> do
      me <- myThreadId
      let address = "bad-" ++ filter (`elem` ['0' .. '9']) (show me) ++ "-" ++ show i
      r <- try (WC.start localConfig {WC.configListen = address} hello)
      case r of
        Left (e :: WC.WarpCoreError)
          | address `isInfixOf` WC.errorMessage e -> pure ()
          | otherwise -> atomicModifyIORef' wrong (\n -> (n + 1, ()))
        Right s -> WC.close s >> atomicModifyIORef' wrong (\n -> (n + 1, ()))
    pure v
  mapM_ takeMVar done
  mapM_ killThread sleepers
  void (tryPutMVar stop ())
  n <- readIORef wrong
  say ("messages not their call's: " ++ show n)
  when (n > 0) exitFailure
