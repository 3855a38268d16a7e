{-# LANGUAGE OverloadedStrings #-}
{-# LANGUAGE ScopedTypeVariables #-}
-- | Request bodies that stream (issue 20): 'getRequestBodyChunk' and the
-- native 'WC.readChunk' hand out a large body as it arrives, in every
-- dispatch mode; there is no body limit by default in the WAI handler;
-- 'setMaxBodySize' still limits; 'setMaximumBodyFlush' decides whether a
-- connection whose body was left unread is reused.
module BodySpec (spec) where

import Control.Concurrent (forkIO)
import Control.Exception (SomeException, bracket, try)
import Control.Monad (forM_, unless, void, when)
import qualified Data.ByteString as B
import qualified Data.ByteString.Builder as BB
import qualified Data.ByteString.Char8 as B8
import Data.IORef
import qualified Network.HTTP.Types as H
import Network.Wai
import Network.Socket (close)
import qualified Network.Socket.ByteString as NSB
import Network.Wai.Handler.WarpCore
import System.IO (hPutStrLn, stderr)
import System.Timeout (timeout)
import Test.Hspec
import Text.Printf (printf)

import qualified Network.WarpCore as WC
import Upload
import Util

-- | What an echo saw of the body: how many chunks and the largest.
type Seen = IORef (Int, Int)

newSeen :: IO Seen
newSeen = newIORef (0, 0)

saw :: Seen -> B.ByteString -> IO ()
saw seen c = atomicModifyIORef' seen (\(n, m) -> ((n + 1, max m (B.length c)), ()))

-- | A WAI echo that writes back each chunk as it reads it, as the demo does.
-- @/count@ reads the whole body first and answers its length; @/ignore@
-- answers without reading.
echoApp :: Seen -> Application
echoApp seen req respond = case rawPathInfo req of
  "/count" -> do
    let go n = do
          c <- getRequestBodyChunk req
          if B.null c then pure n else go (n + B.length c)
    n <- go 0
    respond (responseLBS H.status200 [] (BB.toLazyByteString (BB.intDec n)))
  "/ignore" -> respond (responseLBS H.status200 [] "ignored")
  "/hello" -> respond (responseLBS H.status200 [] "hi")
  _ -> respond $ responseStream H.status200 [] $ \write flush ->
    let loop = do
          c <- getRequestBodyChunk req
          unless (B.null c) $ saw seen c >> write (BB.byteString c) >> flush >> loop
     in loop

-- | The same echo on the native API: 'WC.readChunk' and a stream.
nativeEcho :: Seen -> WC.Handler
nativeEcho seen req res = case WC.requestBodyReader req of
  Nothing -> WC.respond res 200 [] (WC.requestBody req)
  Just body -> do
    WC.startStream res 200 [] Nothing
    let loop = do
          c <- WC.readChunk body
          unless (B.null c) $ saw seen c >> WC.writeStream res c >> loop
    loop
    WC.endStream res

-- | Sends a 2 MiB body (twice the whole-body maximum) in 8 pieces and waits
-- for each piece's echo before sending the next: a server that waited for
-- the whole body before calling the application never echoes the first
-- piece, and the wait fails after 20 s.
lockstep :: Int -> Seen -> IO ()
lockstep port seen =
  bracket (connect port) closeConn $ \c -> do
    let size = 256 * 1024
        count = 8 :: Int
        total = fromIntegral (size * count)
        ps = pieces size total
    sendBytes c ("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: " <> B8.pack (show total) <> "\r\n\r\n")
    sendBytes c (head ps)
    started <- timeout (20 * 1000000) $ do
      (status, fields) <- readHead c
      body <- bodyOf c fields
      pure (status, body)
    case started of
      Nothing -> expectationFailure "no answer began after the first piece was sent: the body did not stream"
      Just (status, body) -> do
        status `shouldBe` 200
        forM_ (zip [1 :: Int ..] ps) $ \(i, p) -> do
          when (i > 1) (sendBytes c p)
          echoed <- timeout (20 * 1000000) (readAtLeast body (B.length p))
          case echoed of
            Nothing -> expectationFailure ("piece " ++ show i ++ " of " ++ show count ++ " was not echoed before the next was sent: the body did not stream")
            Just bs -> B.concat bs `shouldBe` p
    (chunks, largest) <- readIORef seen
    chunks `shouldSatisfy` (>= count)
    largest `shouldSatisfy` (<= WC.chunkSize)

modes :: [Dispatch]
modes = [Dispatcher, ForkInCallback, InCallback]

spec :: Spec
spec = describe "request bodies that stream (issue 20)" $ do
  describe "getRequestBodyChunk (WAI), in each mode" $
    forM_ modes $ \mode ->
      it ("hands out a 2 MiB body piece by piece as it arrives, " ++ show mode) $ bounded $ do
        seen <- newSeen
        withApplicationSettings (setDispatch mode defaultSettings) (pure (echoApp seen)) $ \port ->
          lockstep port seen

  describe "readChunk (Network.WarpCore), in each mode" $
    forM_ modes $ \mode ->
      it ("hands out a 2 MiB body piece by piece as it arrives, " ++ show mode) $ bounded $ do
        seen <- newSeen
        let cfg = localConfig {WC.configDispatch = mode, WC.configMaxBodySize = Just maxBound}
        withRawApi cfg (nativeEcho seen) $ \port -> lockstep port seen

  it "a WAI application echoes 100 MiB as it arrives (no body limit by default), SHA-256 checked" $ boundedFor 300 $ do
    seen <- newSeen
    withApplicationSettings defaultSettings (pure (echoApp seen)) $ \port -> do
      let total = 100 * 1024 * 1024
      e <- uploadEcho port "/echo" False total
      e `shouldEchoWhole` total
      -- The echo began long before the upload ended.
      echoSentAtFirstByte e `shouldSatisfy` (< 64 * 1024 * 1024)
      (chunks, largest) <- readIORef seen
      chunks `shouldSatisfy` (>= fromIntegral (total `div` fromIntegral WC.chunkSize))
      largest `shouldSatisfy` (<= WC.chunkSize)
      hPutStrLn stderr (printf "      100 MiB WAI echo: %.2f s (%.0f MiB/s), %d chunks, first byte back after %d KiB sent" (echoSeconds e) (100 / echoSeconds e) chunks (echoSentAtFirstByte e `div` 1024))

  it "a chunked upload streams too" $ bounded $ do
    seen <- newSeen
    withApplicationSettings defaultSettings (pure (echoApp seen)) $ \port -> do
      let total = 3 * 1024 * 1024 + 5
      e <- uploadEcho port "/echo" True total
      e `shouldEchoWhole` total
      (chunks, _) <- readIORef seen
      chunks `shouldSatisfy` (> 1)

  it "setMaxBodySize limits a body that streams: 413 before the answer began" $ bounded $ do
    seen <- newSeen
    let s = setWholeBodyMax 65536 (setMaxBodySize (1024 * 1024) defaultSettings)
    withApplicationSettings s (pure (echoApp seen)) $ \port ->
      bracket (connect port) closeConn $ \c -> do
        sendBytes c "POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        -- 2 MiB in chunks; the server stops reading at the limit.
        let frame p = B8.pack (printf "%x" (B.length p)) <> "\r\n" <> p <> "\r\n"
        _ <- forkIO (void (try (mapM_ (sendBytes c . frame) (pieces 65536 (2 * 1024 * 1024))) :: IO (Either SomeException ())))
        (status, _) <- readHead c
        status `shouldBe` 413

  describe "Expect: 100-continue" $ do
    it "a client is not told to send a body the application answers without reading" $ bounded $ do
      seen <- newSeen
      withApplicationSettings defaultSettings (pure (echoApp seen)) $ \port ->
        bracket (rawConnect port) close $ \s -> do
          NSB.sendAll s "POST /ignore HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 10485760\r\n\r\n"
          -- The answer, then the connection's end; no 100 Continue.
          reply <- readUntilClosed s
          B.take 15 reply `shouldBe` "HTTP/1.1 200 OK"
          B8.unpack reply `shouldEndWith` "ignored"
    it "a client is told to send its body when the application reads it (here after starting its answer)" $ bounded $ do
      seen <- newSeen
      withApplicationSettings defaultSettings (pure (echoApp seen)) $ \port ->
        bracket (rawConnect port) close $ \s -> do
          NSB.sendAll s "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2097152\r\n\r\n"
          interim <- readResponseHead s
          B.take 21 interim `shouldBe` "HTTP/1.1 100 Continue"

  describe "setMaximumBodyFlush: a 1 MiB body the application did not read" $ do
    let ignored flush = do
          seen <- newSeen
          let s = setWholeBodyMax 65536 (setMaximumBodyFlush flush defaultSettings)
          withApplicationSettings s (pure (echoApp seen)) $ \port ->
            bracket (connect port) closeConn $ \c -> do
              let total = 1024 * 1024
              sendBytes c ("POST /ignore HTTP/1.1\r\nHost: t\r\nContent-Length: " <> B8.pack (show total) <> "\r\n\r\n")
              -- The body and a second request, from a thread: the server may
              -- close the connection before it has read them.
              _ <- forkIO . void $
                (try (mapM_ (sendBytes c) (pieces 65536 total) >> sendBytes c "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n") :: IO (Either SomeException ()))
              (status, fields) <- readHead c
              status `shouldBe` 200
              first <- bodyOf c fields >>= \next -> B.concat <$> readAtLeast next 7
              first `shouldBe` "ignored"
              -- The second answer, or the connection's end.
              second <- try $ do
                (status2, fields2) <- readHead c
                body2 <- bodyOf c fields2 >>= \next -> B.concat <$> readAtLeast next 2
                pure (status2, body2)
              pure $ case second of
                Right answer -> Just answer
                Left (_ :: SomeException) -> Nothing
    it "Nothing: the rest is read and the connection serves the next request" $ bounded $
      ignored Nothing `shouldReturn` Just (200, "hi")
    it "Just 2 MiB: the binding reads what the library would not, the connection goes on" $ bounded $
      ignored (Just (2 * 1024 * 1024)) `shouldReturn` Just (200, "hi")
    it "the default (Just 8192, the library's 256 KiB): the connection closes after the answer" $ bounded $
      ignored (getMaximumBodyFlush defaultSettings) `shouldReturn` Nothing
