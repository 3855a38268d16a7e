{-# LANGUAGE OverloadedStrings #-}
{-# LANGUAGE ScopedTypeVariables #-}
-- | Connections that switch protocols: 'responseRaw' in the WAI handler,
-- with Debian's wai-websockets and websockets packages running unchanged
-- on it (driven by the websockets package's own client), its fallback,
-- a raw application that fails or writes to a closed connection, and the
-- native 'WC.withUpgrade'.
module UpgradeSpec (spec) where

import Control.Concurrent (threadDelay)
import Control.Concurrent.MVar
import Control.Exception
import Control.Monad (forM_, replicateM, unless)
import qualified Data.ByteString as B
import qualified Data.ByteString.Char8 as B8
import qualified Data.ByteString.Lazy as L
import qualified Data.ByteString.Lazy.Char8 as L8
import Data.List (isInfixOf)
import Data.Text (Text)
import GHC.IO.Exception (IOErrorType (ResourceVanished))
import Network.HTTP.Client (responseBody, responseStatus)
import qualified Network.HTTP.Types as H
import Network.Socket (ShutdownCmd (ShutdownSend), close, shutdown)
import qualified Network.Socket.ByteString as NSB
import Network.Wai (Application, Request, rawPathInfo, responseLBS, responseRaw)
import Network.Wai.Internal (Response)
import Network.Wai.Handler.WebSockets (websocketsOr)
import qualified Network.WebSockets as WS
import System.IO.Error (ioeGetErrorType)
import System.Timeout (timeout)
import Test.Hspec

import qualified Network.WarpCore as WC
import Network.Wai.Handler.WarpCore (Dispatch (..), defaultSettings, setOnException, waiHandler)
import Util

-- | A WebSocket echo written for Warp, as wai-websockets' users write it:
-- text back as text, binary as binary, the close answered.
wsEcho :: WS.ServerApp
wsEcho pc = do
  conn <- WS.acceptRequest pc
  let loop = WS.receiveDataMessage conn >>= WS.sendDataMessage conn >> loop
  loop `catch` \e -> case e of
    WS.CloseRequest _ _ -> pure ()
    _ -> throwIO e

wsApp :: Application
wsApp = websocketsOr WS.defaultConnectionOptions wsEcho $ \_ respond ->
  respond (responseLBS H.status400 [(H.hContentType, "text/plain")] "a WebSocket handshake is expected here\n")

-- | A server for a WAI application on the safe API (for its stats).
withWai :: Dispatch -> (Maybe Request -> SomeException -> IO ()) -> Application -> (WC.Server -> Int -> IO a) -> IO a
withWai d onErr app act =
  WC.withServer localConfig {WC.configDispatch = d} (waiHandler (setOnException onErr defaultSettings) app) $ \s ->
    act s (WC.serverPort s)

quiet :: Maybe Request -> SomeException -> IO ()
quiet _ _ = pure ()

-- | Waits (at most 10 s) until the server has no connection open.
connectionsGone :: WC.Server -> IO ()
connectionsGone s = go (200 :: Int)
  where
    go 0 = WC.stats s >>= \st -> expectationFailure ("connections still open: " ++ show (WC.statsConnectionsActive st))
    go n = do
      st <- WC.stats s
      unless (WC.statsConnectionsActive st == 0) (threadDelay 50000 >> go (n - 1))

receiveText :: WS.Connection -> IO L.ByteString
receiveText conn =
  WS.receiveDataMessage conn >>= \m -> case m of
    WS.Text bytes _ -> pure bytes
    other -> fail ("expected a text message, got " ++ show other)

receiveBinary :: WS.Connection -> IO L.ByteString
receiveBinary conn =
  WS.receiveDataMessage conn >>= \m -> case m of
    WS.Binary bytes -> pure bytes
    other -> fail ("expected a binary message, got " ++ show other)

-- | Sends the head of a request that asks to switch to `proto` and reads
-- the answer's head (with whatever followed it).
upgradeRequest :: B.ByteString -> B.ByteString
upgradeRequest proto = "GET /raw HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: " <> proto <> "\r\n\r\n"

-- | A raw application that answers 101 itself and echoes bytes until the
-- peer half-closes.
rawEcho :: IO B.ByteString -> (B.ByteString -> IO ()) -> IO ()
rawEcho recv send = do
  send "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
  let loop = recv >>= \bs -> unless (B.null bs) (send bs >> loop)
  loop

fallback :: Response
fallback = responseLBS (H.mkStatus 426 "Upgrade Required") [(H.hContentType, "text/plain"), ("Upgrade", "echo")] "fallback\n"

spec :: Spec
spec = describe "responseRaw and WebSockets" $ do
  forM_ [Dispatcher, ForkInCallback, InCallback] $ \d ->
    it ("runs wai-websockets unchanged (" ++ show d ++ "): text, binary, 300 KB, many in a row, a clean close") $ bounded $
      withWai d quiet wsApp $ \server port -> do
        let text = "héllo" :: Text
            big = L.pack (take 300000 (cycle [0 .. 250]))
            bigText = L8.pack (take 300000 (cycle ['a' .. 'z']))
        sock <- rawConnect port
        closing <- WS.runClientWithSocket sock "127.0.0.1" "/ws" WS.defaultConnectionOptions [] $ \conn -> do
          WS.sendTextData conn text
          receiveText conn `shouldReturn` WS.toLazyByteString text
          WS.sendBinaryData conn (B.pack [0, 1, 2, 255])
          receiveBinary conn `shouldReturn` L.pack [0, 1, 2, 255]
          WS.sendBinaryData conn big
          receiveBinary conn `shouldReturn` big
          WS.sendTextData conn bigText
          receiveText conn `shouldReturn` bigText
          -- Many in a row before reading any answer, then every answer in order.
          forM_ [1 .. 100 :: Int] $ \i ->
            if even i then WS.sendTextData conn (L8.pack (show i)) else WS.sendBinaryData conn (L8.pack (show i))
          forM_ [1 .. 100 :: Int] $ \i ->
            (if even i then receiveText conn else receiveBinary conn) `shouldReturn` L8.pack (show i)
          WS.sendClose conn ("bye" :: Text)
          try (WS.receiveDataMessage conn)
        case closing of
          Left (WS.CloseRequest code reason) -> (code, reason) `shouldBe` (1000, "bye")
          other -> expectationFailure ("expected the close answered, got " ++ show other)
        -- The server closed the connection after the closing handshake.
        timeout 10000000 (NSB.recv sock 4096) `shouldReturn` Just ""
        close sock
        connectionsGone server
        st <- WC.stats server
        WC.statsUpgrades st `shouldBe` 1
        -- A request that is not a handshake gets the application's fallback.
        plain <- get port "/ws"
        H.statusCode (responseStatus plain) `shouldBe` 400

  it "sends responseRaw's fallback to a request that did not ask to switch protocols" $ bounded $
    withWai Dispatcher quiet (\_ respond -> respond (responseRaw rawEcho fallback)) $ \server port -> do
      forM_ [1 .. 2 :: Int] $ \_ -> do
        -- (Connection: close: the client's pool would keep it open.)
        r <- getWith port "/raw" [("Connection", "close")]
        (H.statusCode (responseStatus r), responseBody r) `shouldBe` (426, "fallback\n")
      -- Upgrade without Connection: upgrade does not ask either.
      answer <- rawExchange port "GET /raw HTTP/1.1\r\nHost: t\r\nUpgrade: echo\r\nConnection: close\r\n\r\n" (const False)
      B.take 12 answer `shouldBe` "HTTP/1.1 426"
      ("fallback\n" `B.isSuffixOf` answer) `shouldBe` True
      -- One that does ask is taken over: the raw application's own 101, then
      -- its echo, bytes sent with the head included.
      sock <- rawConnect port
      NSB.sendAll sock (upgradeRequest "echo" <> "early")
      got <- readFor sock (\b -> "early" `B.isSuffixOf` b)
      ("HTTP/1.1 101 Switching Protocols\r\n" `B.isPrefixOf` got) `shouldBe` True
      NSB.sendAll sock "more bytes"
      readFor sock ("more bytes" `B.isSuffixOf`) >>= (`shouldBe` "more bytes")
      -- The peer's half-close ends recv; the raw application returns and the
      -- connection closes.
      shutdown sock ShutdownSend
      readUntilClosed sock `shouldReturn` ""
      close sock
      connectionsGone server
      (WC.statsUpgrades <$> WC.stats server) `shouldReturn` 1

  forM_ [Dispatcher, InCallback] $ \d ->
    it ("closes the connection when the raw application throws, and serves on (" ++ show d ++ ")") $ bounded $ do
      seen <- newEmptyMVar
      let app req respond
            | rawPathInfo req == "/raw" = respond $ flip responseRaw fallback $ \recv _ -> do
                _ <- recv
                throwIO (userError "the raw application failed")
            | otherwise = respond (responseLBS H.status200 [] "still here")
          onErr _ e = () <$ tryPutMVar seen (show e)
      withWai d onErr app $ \server port -> do
        sock <- rawConnect port
        NSB.sendAll sock (upgradeRequest "echo" <> "x")
        readUntilClosed sock `shouldReturn` ""
        close sock
        msg <- timeout 10000000 (takeMVar seen)
        msg `shouldSatisfy` maybe False ("the raw application failed" `isInfixOf`)
        (responseBody <$> getWith port "/" [("Connection", "close")]) `shouldReturn` "still here"
        connectionsGone server

  it "makes send throw an IOException (ResourceVanished) once the peer is gone" $ bounded $ do
    outcome <- newEmptyMVar
    let raw :: IO B.ByteString -> (B.ByteString -> IO ()) -> IO ()
        raw recv send = do
          send "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
          eof <- recv
          -- The peer closed: writes fail soon (the first may still be queued).
          r <- try (replicateM 2000 (send (B.replicate 65536 120) >> threadDelay 1000))
          putMVar outcome (B.null eof, either (Just . ioeGetErrorType) (const Nothing) r)
    withWai Dispatcher quiet (\_ respond -> respond (responseRaw raw fallback)) $ \server port -> do
      sock <- rawConnect port
      NSB.sendAll sock (upgradeRequest "echo")
      _ <- readFor sock ("\r\n\r\n" `B.isSuffixOf`)
      close sock
      timeout 30000000 (takeMVar outcome) `shouldReturn` Just (True, Just ResourceVanished)
      connectionsGone server

  it "upgrades with the library's 101 on the native API (withUpgrade)" $ bounded $ do
    let handler _ res =
          WC.withUpgrade res [("Upgrade", "echo")] (WC.respond res 426 [] "no") $ \up -> do
            let loop = WC.readUpgraded up >>= \bs -> unless (B.null bs) (WC.writeUpgraded up bs >> loop)
            loop
    WC.withServer localConfig handler $ \server -> do
      let port = WC.serverPort server
      (H.statusCode . responseStatus <$> getWith port "/" [("Connection", "close")]) `shouldReturn` 426
      sock <- rawConnect port
      NSB.sendAll sock (upgradeRequest "echo")
      headBytes <- readFor sock ("\r\n\r\n" `B.isSuffixOf`)
      ("HTTP/1.1 101 " `B.isPrefixOf` headBytes) `shouldBe` True
      ("\r\nUpgrade: echo\r\n" `B.isInfixOf` headBytes) `shouldBe` True
      let big = B8.pack (take 200000 (cycle ['0' .. '9']))
      NSB.sendAll sock big
      readFor sock (\b -> B.length b >= B.length big) >>= (`shouldBe` big)
      shutdown sock ShutdownSend
      readUntilClosed sock `shouldReturn` ""
      close sock
      connectionsGone server
  where
    -- Reads until what arrived satisfies `done` (or the connection closed).
    readFor sock done = go B.empty
      where
        go acc
          | not (B.null acc) && done acc = pure acc
          | otherwise = do
              chunk <- NSB.recv sock 65536
              if B.null chunk then pure acc else go (acc <> chunk)
