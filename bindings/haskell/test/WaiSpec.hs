{-# LANGUAGE OverloadedStrings #-}
{-# LANGUAGE ScopedTypeVariables #-}
-- | The WAI handler over real sockets: every response kind, request bodies,
-- exceptions, and a Scotty application.
module WaiSpec (spec) where

import Control.Concurrent
import Control.Exception
import Control.Monad (forM_)
import qualified Data.ByteString as B
import qualified Data.ByteString.Builder as BB
import qualified Data.ByteString.Char8 as B8
import qualified Data.ByteString.Lazy as L
import qualified Data.ByteString.Lazy.Char8 as L8
import Data.IORef
import Data.List (sort)
import qualified Data.Text.Lazy as TL
import Network.HTTP.Client (responseBody, responseHeaders, responseStatus)
import qualified Network.HTTP.Types as H
import Network.Wai hiding (responseHeaders, responseStatus)
import Network.Wai.Handler.WarpCore
import System.Directory (getTemporaryDirectory, removeFile)
import System.FilePath ((</>))
import Test.Hspec
import qualified Web.Scotty as S

import Util

data Fixture = Fixture {fixFile :: FilePath, fixContent :: B.ByteString}

fileBytes :: B.ByteString
fileBytes = B.pack (take 300000 (cycle [0 .. 250]))

withFixture :: (Fixture -> IO a) -> IO a
withFixture act = do
  tmp <- getTemporaryDirectory
  let path = tmp </> "warpcore-hs-test.bin"
  B.writeFile path fileBytes
  act (Fixture path fileBytes) `finally` removeFile path

readAll :: Request -> IO B.ByteString
readAll req = go []
  where
    go acc = do
      c <- getRequestBodyChunk req
      if B.null c then pure (B.concat (reverse acc)) else go (c : acc)

testApp :: Fixture -> Application
testApp fx req respond = case pathInfo req of
  ["lbs"] -> respond (responseLBS H.status200 [("Content-Type", "text/plain"), ("X-Custom", "1")] "lazy hello")
  ["builder"] -> respond (responseBuilder H.status202 [] (mconcat (replicate 50000 (BB.word8 65))))
  ["file"] -> respond (responseFile H.status200 [("Content-Type", "application/octet-stream")] (fixFile fx) Nothing)
  ["file-part"] -> respond (responseFile H.status206 [] (fixFile fx) (Just (FilePart 10 20 (fromIntegral (B.length (fixContent fx))))))
  ["file-missing"] -> respond (responseFile H.status200 [] "/nonexistent/file" Nothing)
  ["stream"] -> respond $ responseStream H.status200 [("Content-Type", "text/plain")] $ \write flush -> do
    write "first,"
    flush
    forM_ [1 .. 1000 :: Int] $ \i -> write (BB.intDec i <> ",")
    write (BB.byteString (B8.replicate 2000000 'x'))
    write "last"
  ["stream-length"] -> respond $ responseStream H.status200 [("Content-Length", "10")] $ \write _ -> write "0123456789"
  ["stream-throws"] -> respond $ responseStream H.status200 [("Content-Type", "text/plain")] $ \write flush -> do
    write "partial"
    flush
    throwIO (userError "stream failure")
  ["raw"] -> respond (responseRaw (\_ _ -> pure ()) (responseLBS H.status418 [] "fallback"))
  ["echo"] -> do
    body <- readAll req
    respond (responseLBS H.status200 [] (L.fromStrict body))
  ["throw"] -> throwIO (userError "application failure")
  ["req"] ->
    respond . responseLBS H.status200 [] . L8.pack $
      show
        ( requestMethod req
        , rawPathInfo req
        , rawQueryString req
        , pathInfo req
        , queryString req
        , httpVersion req
        , show (remoteHost req)
        , requestHeaderHost req
        , requestBodyLength req
        )
  _ -> respond (responseLBS H.status404 [] "not found")

withApp :: Settings -> Application -> (Int -> IO a) -> IO a
withApp s app = withApplicationSettings s (pure app)

spec :: Spec
spec = describe "Network.Wai.Handler.WarpCore" $ do
  mapM_ (responses . Just) [Dispatcher, ForkInCallback, InCallback]

  it "answers 500 and calls onException when the application throws" $ bounded $ withFixture $ \fx -> do
    seen <- newEmptyMVar
    let s = setOnException (\r e -> putMVar seen (fmap rawPathInfo r, show e)) defaultSettings
    withApp s (testApp fx) $ \port -> do
      r <- get port "/throw"
      H.statusCode (responseStatus r) `shouldBe` 500
      responseBody r `shouldBe` "Something went wrong"
      (p, msg) <- takeMVar seen
      p `shouldBe` Just "/throw"
      msg `shouldContain` "application failure"

  it "uses setOnExceptionResponse" $ bounded $ withFixture $ \fx -> do
    let s = setOnException (\_ _ -> pure ()) (setOnExceptionResponse exceptionResponseForDebug defaultSettings)
    withApp s (testApp fx) $ \port -> do
      r <- get port "/throw"
      H.statusCode (responseStatus r) `shouldBe` 500
      L8.unpack (responseBody r) `shouldContain` "application failure"

  it "reads large and chunked request bodies, refuses too large ones" $ bounded $ withFixture $ \fx -> do
    withApp defaultSettings (testApp fx) $ \port -> do
      let big = L.fromStrict (B.replicate 900000 7)
      (responseBody <$> post port "/echo" big) `shouldReturn` big
      -- No limit by default, as with Warp: 2 MB streams (past the 1 MiB whole-body maximum).
      (responseBody <$> post port "/echo" (L.replicate 2000000 1)) `shouldReturn` L.replicate 2000000 1
    withApp (setMaxBodySize (1024 * 1024) defaultSettings) (testApp fx) $ \port -> do
      (H.statusCode . responseStatus <$> post port "/echo" (L.replicate 2000000 1)) `shouldReturn` 413
      let chunked =
            "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              <> "5\r\nhello\r\n1;ext=1\r\n,\r\n6\r\n world\r\n0\r\n\r\n"
      raw <- rawExchange port chunked ("hello, world" `B.isSuffixOf`)
      B8.unpack raw `shouldContain` "Content-Length: 12"
      B8.unpack raw `shouldEndWith` "hello, world"
    withApp (setMaxBodySize (8 * 1024 * 1024) defaultSettings) (testApp fx) $ \port -> do
      let huge = L.fromStrict (B.replicate (4 * 1024 * 1024) 9)
      (responseBody <$> post port "/echo" huge) `shouldReturn` huge

  it "hands the request's fields to the application" $ bounded $ withFixture $ \fx ->
    withApp defaultSettings (testApp fx) $ \port -> do
      r <- get port "/req?a=1&b=%20x"
      let expected =
            show
              ( "GET" :: B.ByteString
              , "/req" :: B.ByteString
              , "?a=1&b=%20x" :: B.ByteString
              , ["req"] :: [TL.Text]
              , [("a", Just "1"), ("b", Just " x")] :: H.Query
              , H.http11
              , "127.0.0.1:" :: String
              , Just ("127.0.0.1:" <> B8.pack (show port))
              , KnownLength 0
              )
      -- remoteHost carries the client's port, which varies: compare around it.
      let got = L8.unpack (responseBody r)
      normalisePort got `shouldBe` normalisePort expected

  it "logs each response" $ bounded $ withFixture $ \fx -> do
    logged <- newIORef []
    let s = setLogger (\r st len -> atomicModifyIORef' logged (\l -> ((rawPathInfo r, H.statusCode st, len) : l, ()))) defaultSettings
    withApp s (testApp fx) $ \port -> do
      _ <- get port "/lbs"
      _ <- get port "/stream-length"
      _ <- get port "/file"
      _ <- get port "/nope"
      -- The logger runs after the answer is sent, on the request's own
      -- thread: wait for the fourth line; lines may come in any order.
      let settled n = do
            l <- readIORef logged
            if length l >= 4 || n <= (0 :: Int) then pure (sort l) else threadDelay 5000 >> settled (n - 1)
      settled 400
        `shouldReturn` sort [("/lbs", 200, Nothing), ("/stream-length", 200, Just 10), ("/file", 200, Just 300000), ("/nope", 404, Nothing)]

  it "serves a Scotty application" $ bounded $ do
    app <- S.scottyApp $ do
      S.get "/scotty/:name" $ do
        name <- S.param "name"
        S.text ("hello " <> name)
      S.post "/scotty" $ do
        b <- S.body
        S.raw (L.reverse b)
    withApp defaultSettings app $ \port -> do
      r <- get port "/scotty/haskell"
      responseBody r `shouldBe` "hello haskell"
      lookup "Content-Type" (responseHeaders r) `shouldBe` Just "text/plain; charset=utf-8"
      (responseBody <$> post port "/scotty" "abc") `shouldReturn` "cba"
      (H.statusCode . responseStatus <$> get port "/missing") `shouldReturn` 404

  it "runs the application unmasked, as Warp does, in every dispatch mode" $ bounded $
    forM_ [Dispatcher, ForkInCallback, InCallback] $ \mode -> do
      let app _ respond = getMaskingState >>= respond . responseLBS H.status200 [] . L8.pack . show
      withApp (setDispatch mode defaultSettings) app $ \port ->
        (responseBody <$> get port "/") `shouldReturn` "Unmasked"

  it "stops gracefully through setInstallShutdownHandler and runs onReady" $ bounded $ withFixture $ \fx -> do
    stopVar <- newEmptyMVar
    portVar <- newEmptyMVar
    let s =
          setPort 0 . setHost "127.0.0.1"
            . setInstallShutdownHandler (putMVar stopVar)
            . setOnReady (putMVar portVar)
            $ defaultSettings
    done <- newEmptyMVar
    _ <- forkIO (runSettings s (testApp fx) `finally` putMVar done ())
    port <- takeMVar portVar
    (responseBody <$> get port "/lbs") `shouldReturn` "lazy hello"
    stop <- takeMVar stopVar
    stop
    takeMVar done
  where
    normalisePort = go
      where
        go ('1' : '2' : '7' : '.' : '0' : '.' : '0' : '.' : '1' : ':' : rest) = "127.0.0.1:" ++ go (dropWhile (`elem` ['0' .. '9']) rest)
        go (c : rest) = c : go rest
        go [] = []

responses :: Maybe Dispatch -> Spec
responses mode = describe ("every response kind, " ++ maybe "default" show mode) $ do
  let settings = maybe id setDispatch mode defaultSettings
      with act = bounded $ withFixture $ \fx -> withApp settings (testApp fx) (act fx)
  it "responseLBS and responseBuilder" $ with $ \_ port -> do
    r <- get port "/lbs"
    responseBody r `shouldBe` "lazy hello"
    lookup "X-Custom" (responseHeaders r) `shouldBe` Just "1"
    lookup "Server" (responseHeaders r) `shouldBe` Just "warpcore"
    b <- get port "/builder"
    H.statusCode (responseStatus b) `shouldBe` 202
    responseBody b `shouldBe` L.replicate 50000 65
  it "responseFile: whole, FilePart, Range, conditional, HEAD, missing" $ with $ \fx port -> do
    whole <- get port "/file"
    responseBody whole `shouldBe` L.fromStrict (fixContent fx)
    lookup "Accept-Ranges" (responseHeaders whole) `shouldBe` Just "bytes"
    let Just lastModified = lookup "Last-Modified" (responseHeaders whole)
    part <- get port "/file-part"
    H.statusCode (responseStatus part) `shouldBe` 206
    responseBody part `shouldBe` L.fromStrict (B.take 20 (B.drop 10 (fixContent fx)))
    lookup "Content-Range" (responseHeaders part) `shouldBe` Just "bytes 10-29/300000"
    ranged <- getWith port "/file" [("Range", "bytes=100-199")]
    H.statusCode (responseStatus ranged) `shouldBe` 206
    responseBody ranged `shouldBe` L.fromStrict (B.take 100 (B.drop 100 (fixContent fx)))
    suffix <- getWith port "/file" [("Range", "bytes=-5")]
    responseBody suffix `shouldBe` L.fromStrict (B.drop 299995 (fixContent fx))
    unsatisfiable <- getWith port "/file" [("Range", "bytes=400000-")]
    H.statusCode (responseStatus unsatisfiable) `shouldBe` 416
    notModified <- getWith port "/file" [("If-Modified-Since", lastModified)]
    H.statusCode (responseStatus notModified) `shouldBe` 304
    headRsp <- request port "HEAD" "/file" [] ""
    lookup "Content-Length" (responseHeaders headRsp) `shouldBe` Just "300000"
    responseBody headRsp `shouldBe` ""
    missing <- get port "/file-missing"
    H.statusCode (responseStatus missing) `shouldBe` 404
  it "responseStream: chunked with flush, and with the application's length" $ with $ \_ port -> do
    s <- get port "/stream"
    let body = responseBody s
    L.take 8 body `shouldBe` "first,1,"
    L8.unpack (L.takeWhile (/= 120) body) `shouldEndWith` "999,1000,"
    L.length body `shouldBe` 6 + sum [fromIntegral (length (show i)) + 1 | i <- [1 .. 1000 :: Int]] + 2000000 + 4
    lookup "Transfer-Encoding" (responseHeaders s) `shouldBe` Just "chunked"
    l <- get port "/stream-length"
    responseBody l `shouldBe` "0123456789"
    lookup "Content-Length" (responseHeaders l) `shouldBe` Just "10"
  it "responseStream that throws midway is cut short, never ended" $ with $ \_ port -> do
    -- The connection closes after what was written: no last chunk, and the
    -- pipelined request after it gets no answer.
    raw <- rawExchange port "GET /stream-throws HTTP/1.1\r\nHost: x\r\n\r\nGET /lbs HTTP/1.1\r\nHost: x\r\n\r\n" (const False)
    let (hd, rest) = B.breakSubstring "\r\n\r\n" raw
    B8.unpack hd `shouldContain` "Transfer-Encoding: chunked"
    B.drop 4 rest `shouldBe` "7\r\npartial\r\n"
  it "responseRaw answers with its fallback" $ with $ \_ port -> do
    r <- get port "/raw"
    H.statusCode (responseStatus r) `shouldBe` 418
    responseBody r `shouldBe` "fallback"
  it "keeps a pipelined connection alive across response kinds, in order" $ with $ \_ port -> do
    let reqs = B.concat ["GET " <> p <> " HTTP/1.1\r\nHost: x\r\n\r\n" | p <- ["/lbs", "/stream-length", "/file-part", "/raw"]]
    raw <- rawExchange port reqs ("fallback" `B.isSuffixOf`)
    let statuses = [B.take 3 (B.drop 9 t) | t <- B.tails raw, "HTTP/1.1 " `B.isPrefixOf` t]
    statuses `shouldBe` ["200", "200", "206", "418"]
