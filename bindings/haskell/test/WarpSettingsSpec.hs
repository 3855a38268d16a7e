{-# LANGUAGE OverloadedStrings #-}
{-# LANGUAGE RankNTypes #-}
{-# LANGUAGE ScopedTypeVariables #-}
-- | Warp's settings and request functions as Network.Wai.Handler.WarpCore
-- gives them, each over real sockets (issue #25).
module WarpSettingsSpec (spec) where

import Control.Concurrent (forkIOWithUnmask, threadDelay)
import Control.Concurrent.MVar
import Control.Exception (ErrorCall (..), IOException, SomeException, bracket, evaluate, throwIO, try)
import qualified Data.ByteString as B
import qualified Data.ByteString.Char8 as B8
import qualified Data.ByteString.Lazy.Char8 as L8
import Data.IORef
import Network.HTTP.Client (responseBody, responseHeaders, responseStatus)
import qualified Network.HTTP.Types as H
import qualified Network.Socket as NS
import qualified Network.Socket.ByteString as NSB
import Network.Wai (Application, getRequestBodyChunk, pathInfo, rawPathInfo, remoteHost, responseLBS)
import System.Environment (setEnv, unsetEnv)
import Test.Hspec

import Network.Wai.Handler.WarpCore
import Util

-- | Serves `app` with settings `tune` on a free port for the action.
serving :: (Settings -> Settings) -> Application -> (Int -> IO a) -> IO a
serving tune app = withApplicationSettings (tune defaultSettings) (pure app)

peerApp :: Application
peerApp req respond = respond (responseLBS H.ok200 [] (L8.pack (show (remoteHost req))))

spec :: Spec
spec = describe "Warp's settings on warpcore" $ do
  it "setOnOpen refuses before anything is read, and setOnClose hears of every opened connection with the same address" $ bounded $ do
    opened <- newIORef []
    closed <- newIORef []
    refuse <- newIORef False
    let onOpen a = atomicModifyIORef' opened (\xs -> (a : xs, ())) >> (not <$> readIORef refuse)
        onClose a = atomicModifyIORef' closed (\xs -> (a : xs, ()))
    serving (setOnOpen onOpen . setOnClose onClose) peerApp $ \port -> do
      (H.statusCode . responseStatus <$> get port "/") `shouldReturn` 200
      writeIORef refuse True
      -- Closed at once, nothing read: an empty read or a reset (the request
      -- bytes were never read).
      r <- try (rawExchange port "GET / HTTP/1.1\r\nHost: t\r\n\r\n" (const False))
      either (\(_ :: IOException) -> "") id r `shouldBe` ""
      let waitFor n = do
            c <- readIORef closed
            if length c >= n then pure c else threadDelay 10000 >> waitFor n
      -- http-client's connection closes with the manager; the refused one at once.
      c <- waitFor 1
      o <- readIORef opened
      all (`elem` o) c `shouldBe` True
      length o `shouldBe` 2

  it "setProxyProtocolRequired makes the header's client the remoteHost and closes a connection without one" $ bounded $
    serving setProxyProtocolRequired peerApp $ \port -> do
      r <- rawExchange port "PROXY TCP4 192.0.2.7 198.51.100.2 4321 443\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" (const False)
      snd (B.breakSubstring "\r\n\r\n" r) `shouldBe` "\r\n\r\n192.0.2.7:4321"
      rawExchange port "GET / HTTP/1.1\r\nHost: t\r\n\r\n" (const False) `shouldReturn` ""

  it "setProxyProtocolOptional takes a header when there is one" $ bounded $
    serving setProxyProtocolOptional peerApp $ \port -> do
      r <- rawExchange port "PROXY TCP6 2001:db8::5 ::1 7 443\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" (const False)
      snd (B.breakSubstring "\r\n\r\n" r) `shouldBe` "\r\n\r\n[2001:db8::5]:7"
      body <- responseBody <$> get port "/"
      L8.unpack body `shouldStartWith` "127.0.0.1:"

  it "sends the application's statusMessage as the reason phrase" $ bounded $ do
    let app req respond = respond $ case pathInfo req of
          ["fine"] -> responseLBS (H.mkStatus 200 "Fine") [] "f"
          ["teapot"] -> responseLBS (H.mkStatus 418 "I'm a teapot") [] "t"
          ["gone"] -> responseLBS H.status413 [] "g"
          _ -> responseLBS H.status200 [] "ok"
    serving id app $ \port -> do
      let line p = B.takeWhile (/= 13) <$> rawExchange port ("GET " <> p <> " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n") (const False)
      line "/fine" `shouldReturn` "HTTP/1.1 200 Fine"
      line "/teapot" `shouldReturn` "HTTP/1.1 418 I'm a teapot"
      -- http-types' phrase, as Warp sends it (the library's is "Content Too Large").
      line "/gone" `shouldReturn` "HTTP/1.1 413 Request Entity Too Large"
      line "/" `shouldReturn` "HTTP/1.1 200 OK"

  it "pauseTimeout lets an application take longer than setTimeout; without it the client gets 503" $ boundedFor 30 $ do
    let app req respond = do
          case pathInfo req of
            ["paused"] -> pauseTimeout req
            _ -> pure ()
          threadDelay 3500000
          respond (responseLBS H.ok200 [] "late")
    serving (setTimeout 1) app $ \port -> do
      (H.statusCode . responseStatus <$> get port "/paused") `shouldReturn` 200
      (H.statusCode . responseStatus <$> get port "/other") `shouldReturn` 503

  it "setAltSvc adds Alt-Svc, setNoParsePath keeps the target in rawPathInfo" $ bounded $ do
    let app req respond = respond (responseLBS H.ok200 [] (L8.fromStrict (rawPathInfo req) <> " " <> L8.pack (show (pathInfo req))))
    serving (setAltSvc "h3=\":443\"") app $ \port -> do
      r <- get port "/a"
      lookup "Alt-Svc" (responseHeaders r) `shouldBe` Just "h3=\":443\""
    let abs' p = rawExchange p "GET http://example.com/a%20b?q=1 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n" (const False)
    serving (setNoParsePath True) app $ \port -> do
      r <- abs' port
      snd (B.breakSubstring "\r\n\r\n" r) `shouldBe` "\r\n\r\nhttp://example.com/a%20b [\"a b\"]"
    serving id app $ \port -> do
      r <- abs' port
      snd (B.breakSubstring "\r\n\r\n" r) `shouldBe` "\r\n\r\n/a%20b [\"a b\"]"

  it "getFileInfo stats a file and throws for a missing one; clientCertificate is Nothing" $ bounded $ do
    let app req respond = do
          info <- getFileInfo req "warpcore.cabal"
          missing <- try (getFileInfo req "no-such-file")
          let ok = either (\(_ :: SomeException) -> "threw") (const "found") missing
          respond (responseLBS H.ok200 [] (L8.pack (show (fileInfoSize info) ++ " " ++ ok ++ " " ++ show (clientCertificate req))))
    size <- B.length <$> B.readFile "warpcore.cabal"
    serving id app $ \port ->
      (responseBody <$> get port "/") `shouldReturn` L8.pack (show size ++ " threw Nothing")

  it "setFork forks each request's thread" $ bounded $ do
    forks <- newIORef (0 :: Int)
    let fork :: ((forall a. IO a -> IO a) -> IO ()) -> IO ()
        fork act = do
          atomicModifyIORef' forks (\n -> (n + 1, ()))
          _ <- forkIOWithUnmask act
          pure ()
    serving (setFork fork) peerApp $ \port -> do
      mapM_ (const (get port "/")) [1 .. 3 :: Int]
      readIORef forks `shouldReturn` 3

  it "getRequestBodyChunk throws ConnectionClosedByPeer when the client leaves mid-body" $ bounded $ do
    seen <- newEmptyMVar
    let app req respond = do
          r <- try (let loop = getRequestBodyChunk req >>= \c -> if B.null c then pure () else loop in loop)
          putMVar seen (either (\e -> Just (e :: InvalidRequest)) (const Nothing) r)
          respond (responseLBS H.ok200 [] "")
    serving id app $ \port -> do
      bracket (rawConnect port) NS.close $ \s ->
        NSB.sendAll s ("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5000000\r\n\r\n" <> B8.replicate 100000 'x')
      takeMVar seen `shouldReturn` Just ConnectionClosedByPeer

  it "runEnv fails on a $PORT that is not a number, as Warp's" $ bounded $ do
    setEnv "PORT" "eighty"
    r <- try (runEnv 0 peerApp)
    unsetEnv "PORT"
    either (\(e :: IOError) -> show e) (const "ran") r `shouldContain` "Invalid value in $PORT: eighty"

  it "testWithApplication throws the application's exception to the caller, as Warp's" $ bounded $ do
    let app _ _ = throwIO (ErrorCall "boom")
    r <- try (testWithApplication (pure app) (\port -> get port "/" >> threadDelay 2000000 >> pure ()))
    either (\(ErrorCall m) -> m) (const "no exception") r `shouldBe` "boom"

  it "keeps the settings it cannot use and reads them back" $ do
    let s = setGracefulCloseTimeout1 5 . setGracefulCloseTimeout2 7 . setSlowlorisSize 10 $ defaultSettings
    (getGracefulCloseTimeout1 s, getGracefulCloseTimeout2 s) `shouldBe` (5, 7)
    evaluate (warpVersion == "3.3.21") `shouldReturn` True
