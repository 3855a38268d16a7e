{-# LANGUAGE OverloadedStrings #-}
{-# LANGUAGE ScopedTypeVariables #-}
-- | Issue #29, the Haskell items: the binding as hard to misuse as the
-- engine. What crashes, aborts or hangs when it goes wrong runs in a child
-- process ("Child"), bounded in time.
module SafetySpec (spec) where

import Control.Concurrent
import Control.Exception
import Control.Monad (forM_, replicateM_, unless, void)
import qualified Data.ByteString as B
import qualified Data.ByteString.Char8 as B8
import qualified Data.ByteString.Lazy as L
import Data.IORef
import Data.List (isPrefixOf, stripPrefix)
import Data.Maybe (isJust)
import GHC.Conc (BlockReason (..), ThreadStatus (..), threadStatus)
import Network.HTTP.Client (responseBody, responseStatus)
import qualified Network.HTTP.Types as H
import Network.Wai (rawPathInfo, responseLBS, responseStream)
import qualified Network.Wai.Handler.WarpCore as W
import System.Exit (ExitCode (..))
import System.Mem (performMajorGC)
import System.Timeout (timeout)
import Test.Hspec

import qualified Network.WarpCore as WC
import qualified Network.WarpCore.Raw as Raw
import Util

text :: [(B.ByteString, B.ByteString)]
text = [("Content-Type", "text/plain")]

-- Runs a child scenario and expects it to exit 0; returns its stdout.
childOk :: Int -> [String] -> String -> [String] -> IO String
childOk secs rts name args = do
  r <- runChild secs rts name args
  case r of
    Nothing -> expectationFailure (name ++ " " ++ unwords args ++ ": no exit within " ++ show secs ++ " s") >> pure ""
    Just (code, out, err) -> do
      unless (code == ExitSuccess) $
        expectationFailure (name ++ " " ++ unwords args ++ " exited " ++ show code ++ "\nstdout: " ++ out ++ "\nstderr: " ++ err)
      pure out

-- An IORef captured by what `use` makes (a log sink, a handler), and an
-- action that tells whether it was collected after a major GC: false while
-- something (a FunPtr never freed) still holds it. NOINLINE: no reference
-- may stay in the caller's frame.
{-# NOINLINE watchCollection #-}
watchCollection :: (IORef Int -> IO ()) -> IO (IO Bool)
watchCollection use = do
  ref <- newIORef 0
  collected <- newEmptyMVar
  _ <- mkWeakIORef ref (void (tryPutMVar collected ()))
  use ref
  pure $ do
    performMajorGC
    isJust <$> timeout 5000000 (readMVar collected)

-- The library names its worker threads warpcore-N (the test binary's own
-- threads are warpcore-test).
engineThread :: String -> Bool
engineThread n = case stripPrefix "warpcore-" n of
  Just rest -> not (null rest) && all (`elem` ['0' .. '9']) rest
  Nothing -> False

-- Waits (bounded) until a thread is blocked in the given way.
awaitStatus :: ThreadId -> (ThreadStatus -> Bool) -> IO ()
awaitStatus t ok = do
  r <- timeout 10000000 loop
  unless (isJust r) $ expectationFailure "thread never reached the expected state"
  where
    loop = do
      st <- threadStatus t
      unless (ok st) (threadDelay 1000 >> loop)

spec :: Spec
spec = describe "issue 29 (Haskell)" $ do
  describe "1. no call on a freed server" $
    it "refuses stats, reload, fileCacheStats, shutdownReport, reopenLogs after close, also while another thread closes" $ bounded $ do
      out <- childOk 30 [] "closed-server" []
      lines out `shouldBe` (map ("refused " ++) ["stats", "reload", "fileCacheStats", "shutdownReport", "reopenLogs"] ++ ["polling during close: ok"])

  describe "2. no abort at exit" $ do
    it "exits 0 when main returns inside an InCallback handler" $ bounded $
      replicateM_ 3 (void (childOk 30 [] "exit-in-handler" []))
    forM_ [WC.Dispatcher, WC.ForkInCallback, WC.InCallback] $ \mode ->
      it ("exits 0 when main returns inside the access-log callback (" ++ show mode ++ ")") $ bounded $
        void (childOk 30 [] "exit-in-log" [show mode])
    forM_ [WC.ForkInCallback, WC.InCallback, WC.Dispatcher] $ \mode ->
      it ("exits 0, 5 runs of 5, when main returns with traffic arriving (" ++ show mode ++ ")") $ bounded $
        replicateM_ 5 (void (childOk 30 [] "exit-traffic" [show mode]))

  describe "4. no silent wrap-around" $ do
    it "refuses statuses outside 0..65535 and negative stream lengths before the library" $ bounded $ do
      seen <- newIORef []
      let note s = atomicModifyIORef' seen (\l -> (s : l, ()))
          refused what act = do
            r <- try act
            case r of
              Left (e :: WC.WarpCoreError) -> note (what, WC.errorResult e)
              Right () -> note (what, Raw.resultOk)
          handler _ res = do
            refused "respond" (WC.respond res 65736 text "wrapped")
            refused "respond-big" (WC.respond res 65736 text (B8.replicate 20000 'x'))
            refused "respondLazy" (WC.respondLazy res 65736 text (L.fromChunks (replicate 3 (B8.replicate 10000 'x'))))
            refused "respondBuilder" (WC.respondBuilder res (-65336) text "wrapped")
            refused "startStream" (WC.startStream res 65736 text Nothing)
            refused "startStream-length" (WC.startStream res 200 text (Just (-5)))
            WC.respond res 200 text "refused"
      withRawApi localConfig handler $ \port ->
        (responseBody <$> get port "/") `shouldReturn` "refused"
      got <- readIORef seen :: IO [(String, Raw.Result)]
      lookup "respond" got `shouldBe` Just Raw.resultInvalidStatus
      lookup "respond-big" got `shouldBe` Just Raw.resultInvalidStatus
      lookup "respondLazy" got `shouldBe` Just Raw.resultInvalidStatus
      lookup "respondBuilder" got `shouldBe` Just Raw.resultInvalidStatus
      lookup "startStream" got `shouldBe` Just Raw.resultInvalidStatus
      lookup "startStream-length" got `shouldBe` Just Raw.resultInvalidArgument
    it "WAI: a status past 65535 and a Content-Length past Int64 answer 500" $ bounded $ do
      let app req respond = case rawPathInfo req of
            "/status" -> respond (responseLBS (H.mkStatus 65736 "Wrapped") [] "wrapped")
            _ ->
              respond $
                responseStream H.status200 [("Content-Length", B8.pack (show (2 ^ (64 :: Int) + 6 :: Integer)))] $ \write flush ->
                  write "123456" >> flush
          settings = W.setOnException (\_ _ -> pure ()) W.defaultSettings
      W.withApplicationSettings settings (pure app) $ \port -> do
        (H.statusCode . responseStatus <$> get port "/status") `shouldReturn` 500
        (H.statusCode . responseStatus <$> get port "/length") `shouldReturn` 500

  describe "6. shutdown from inside" $
    it "refuses shutdown, close and reload inside an InCallback handler, at once; they work from another thread" $ bounded $ do
      out <- childOk 30 [] "shutdown-in-handler" []
      lines out `shouldBe` ["refused refused refused", "answered", "closed"]

  describe "7. memory the runtime can see" $
    it "300 POSTs of 256 KiB do not leave their bodies in memory until a major GC" $ bounded $ do
      out <- childOk 60 [] "body-rss" []
      case [read (drop (length ("rss growth KiB " :: String)) l) | l <- lines out, "rss growth KiB " `isPrefixOf` l] of
        [growth] -> (growth :: Int) `shouldSatisfy` (< 32 * 1024)
        _ -> expectationFailure ("no measurement in " ++ show out)

  describe "8. the smaller ones" $ do
    it "keeps each failing call's own error message (32 threads, a context switch at every block, a GC every 16 KiB)" $ bounded $ do
      -- Frequent context switches and GCs move Haskell threads between OS
      -- threads between a call and a read of the message after it (with
      -- the bug: dozens of the 4800 calls read another call's message).
      out <- childOk 60 ["-C0", "-N2", "-A16k"] "error-messages" ["32", "150"]
      lines out `shouldBe` ["messages not their call's: 0"]

    it "puts the runtime's threads back from SCHED_BATCH when the server closes" $ bounded $ do
      withRawApi localConfig (\_ res -> WC.respond res 200 text "hi") $ \port -> do
        replicateM_ 20 ((responseBody <$> get port "/") `shouldReturn` "hi")
        during <- threadPolicies
        -- The dispatchers moved the OS threads running them.
        [n | (n, 3) <- during, not (engineThread n)] `shouldSatisfy` (not . null)
      afterwards <- threadPolicies
      [n | (n, 3) <- afterwards] `shouldBe` []

    it "frees the log callbacks of a start that fails in a setter" $ bounded $ do
      collected <- watchCollection $ \ref -> do
        let cfg = localConfig {WC.configListen = "\255", WC.configAccessLog = Just (\_ -> modifyIORef ref (+ 1))}
        r <- try (WC.start cfg (\_ res -> WC.respond res 200 text "hi"))
        case r of
          Left (e :: WC.WarpCoreError) -> WC.errorResult e `shouldBe` Raw.resultInvalidAddress
          Right s -> WC.close s >> expectationFailure "an address that is not UTF-8 was accepted"
      collected `shouldReturn` True

    it "frees the server when close is interrupted by an asynchronous exception" $ bounded $ do
      inHandler <- newEmptyMVar
      release <- newEmptyMVar
      serverVar <- newEmptyMVar
      let handler _ res = do
            putMVar inHandler ()
            takeMVar release
            WC.respond res 200 text "late"
      collected <- watchCollection $ \ref -> do
        let cfg = localConfig {WC.configDispatch = WC.InCallback, WC.configAccessLog = Just (\_ -> modifyIORef ref (+ 1))}
        s <- WC.start cfg handler
        putMVar serverVar s
      s <- takeMVar serverVar
      client <- forkIO (handle (\(_ :: SomeException) -> pure ()) (void (get (WC.serverPort s) "/")))
      takeMVar inHandler
      closed <- newEmptyMVar
      -- close waits in the library for the worker, which is in the handler.
      closer <- forkIO (WC.close s `finally` putMVar closed ())
      awaitStatus closer (== ThreadBlocked BlockedOnForeignCall)
      killer <- forkIO (killThread closer)
      awaitStatus killer (\st -> st /= ThreadRunning && st /= ThreadFinished && st /= ThreadDied)
      putMVar release ()
      takeMVar closed
      killThread client
      -- The closer was killed, but only after the server was freed with its callbacks.
      collected `shouldReturn` True
      WC.close s
