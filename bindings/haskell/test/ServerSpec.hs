{-# LANGUAGE OverloadedStrings #-}
{-# LANGUAGE ScopedTypeVariables #-}
-- | The safe API (Network.WarpCore) over real sockets, in every dispatch mode.
module ServerSpec (spec) where

import Control.Concurrent
import Control.Concurrent.Async (forConcurrently, wait, withAsync)
import Control.Exception
import Control.Monad (forM_, replicateM_, when)
import Data.List (isPrefixOf)
import qualified Data.ByteString as B
import qualified Data.ByteString.Builder as BB
import qualified Data.ByteString.Char8 as B8
import qualified Data.ByteString.Lazy as L
import qualified Data.ByteString.Lazy.Char8 as L8
import Data.IORef
import Network.HTTP.Client (responseBody, responseHeaders, responseStatus)
import qualified Network.HTTP.Types as H
import Network.Socket (Family (..), SockAddr (..), SocketType (..), close, connect, defaultProtocol, socket)
import qualified Network.Socket.ByteString as NSB
import System.Directory (createDirectoryIfMissing, doesFileExist, getTemporaryDirectory, removeDirectoryRecursive, removeFile)
import System.FilePath ((</>))
import Test.Hspec

import qualified Network.WarpCore as WC
import qualified Network.WarpCore.Raw as Raw
import Util

text :: [(B.ByteString, B.ByteString)]
text = [("Content-Type", "text/plain")]

-- The routes every mode is tested with.
routes :: IORef [String] -> WC.Handler
routes errors req res = case WC.requestPath req of
  "/hello" -> WC.respond res 200 text "Hello, World!"
  "/echo" -> WC.respond res 200 text (WC.requestBody req)
  "/lazy" -> WC.respondLazy res 200 text (L.fromChunks (replicate 40 (B8.replicate 1000 'l')))
  "/big" -> WC.respond res 200 text (B8.replicate 200000 'b')
  "/builder" -> WC.respondBuilder res 201 text (BB.string7 "built " <> BB.intDec 42)
  "/builder-big" -> WC.respondBuilder res 200 text (mconcat (replicate 10000 (BB.string7 "0123456789")))
  "/stream" -> do
    WC.startStream res 200 text Nothing
    forM_ [1 .. 5 :: Int] $ \i -> WC.writeStream res (B8.pack (show i))
    WC.writeStream res (B8.replicate 20000 's')
    WC.endStream res
  "/stream-length" -> do
    WC.startStream res 200 text (Just 6)
    WC.writeStream res "abc"
    WC.writeStreamBuilder res (BB.string7 "def")
    WC.endStream res
  "/throw" -> throwIO (userError "boom")
  "/silent" -> pure ()
  "/twice" -> do
    WC.respond res 200 text "once"
    r <- try (WC.respond res 200 text "twice")
    case r of
      Left (e :: WC.WarpCoreError) | WC.errorResult e == Raw.resultAlreadyAnswered -> pure ()
      _ -> modifyIORef errors ("second answer not refused" :)
  "/bad-header" -> do
    r <- try (WC.respond res 200 [("Bad Name", "x")] "no")
    case r of
      Left (e :: WC.WarpCoreError) | WC.errorResult e == Raw.resultInvalidHeader -> WC.respond res 200 text "recovered"
      _ -> modifyIORef errors ("bad header not refused" :)
  "/info" ->
    WC.respond res 200 text $
      B8.pack (show (WC.requestMethod req, WC.requestTarget req, WC.requestQuery req, WC.requestHeader "x-a" req, WC.requestVersion req))
  _ -> WC.respond res 404 text "Not Found"

modeSpec :: WC.Dispatch -> Spec
modeSpec mode = describe (show mode) $ do
  let cfg = localConfig {WC.configDispatch = mode}
      around' act = bounded $ do
        errors <- newIORef []
        r <- withRawApi cfg {WC.configOnException = \_ -> pure ()} (routes errors) act
        readIORef errors `shouldReturn` []
        pure r
  it "answers with complete bodies: strict, lazy, builder, large" $ around' $ \port -> do
    (responseBody <$> get port "/hello") `shouldReturn` "Hello, World!"
    (responseBody <$> post port "/echo" "ping") `shouldReturn` "ping"
    (L.length . responseBody <$> get port "/lazy") `shouldReturn` 40000
    (L.length . responseBody <$> get port "/big") `shouldReturn` 200000
    b <- get port "/builder"
    H.statusCode (responseStatus b) `shouldBe` 201
    responseBody b `shouldBe` "built 42"
    (L.length . responseBody <$> get port "/builder-big") `shouldReturn` 100000
  it "streams chunked and with a declared length" $ around' $ \port -> do
    s <- get port "/stream"
    responseBody s `shouldBe` "12345" <> L8.replicate 20000 's'
    lookup "Transfer-Encoding" (responseHeaders s) `shouldBe` Just "chunked"
    l <- get port "/stream-length"
    responseBody l `shouldBe` "abcdef"
    lookup "Content-Length" (responseHeaders l) `shouldBe` Just "6"
  it "answers 500 for a handler that throws or does not answer" $ around' $ \port -> do
    (H.statusCode . responseStatus <$> get port "/throw") `shouldReturn` 500
    (H.statusCode . responseStatus <$> get port "/silent") `shouldReturn` 500
    (responseBody <$> get port "/hello") `shouldReturn` "Hello, World!"
  it "refuses a second answer and lets a refused header be corrected" $ around' $ \port -> do
    (responseBody <$> get port "/twice") `shouldReturn` "once"
    (responseBody <$> get port "/bad-header") `shouldReturn` "recovered"
  it "copies the request" $ around' $ \port -> do
    r <- request port "GET" "/info?q=1" [("X-A", "b")] ""
    responseBody r `shouldBe` L8.pack (show ("GET" :: B.ByteString, "/info?q=1" :: B.ByteString, "q=1" :: B.ByteString, Just ("b" :: B.ByteString), (1 :: Int, 1 :: Int)))
  it "serves many concurrent requests and pipelined ones in order" $ around' $ \port -> do
    bodies <- forConcurrently [1 .. 200 :: Int] $ \i -> responseBody <$> post port "/echo" (L8.pack (show i))
    bodies `shouldBe` map (L8.pack . show) [1 .. 200 :: Int]
    let pipelined = B.concat [B8.pack ("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " ++ show (length (show i)) ++ "\r\n\r\n" ++ show i) | i <- [1 .. 20 :: Int]]
    raw <- rawExchange port pipelined (\acc -> countOf "HTTP/1.1 200" acc == 20 && "\r\n\r\n20" `B.isSuffixOf` acc)
    countOf "HTTP/1.1 200" raw `shouldBe` 20
    ordered raw `shouldBe` [1 .. 20]
  where
    countOf pat s = length (filter (pat `B.isPrefixOf`) (B.tails s))
    ordered raw = [read (B8.unpack (B8.takeWhile (`elem` ("0123456789" :: String)) (B.drop 4 (snd (B.breakSubstring "\r\n\r\n" part))))) :: Int | part <- drop 1 (splitOn "HTTP/1.1 200" raw)]
    splitOn pat s = case B.breakSubstring pat s of
      (a, rest)
        | B.null rest -> [a]
        | otherwise -> a : splitOn pat (B.drop (B.length pat) rest)

schedBatch :: Int
schedBatch = 3

spec :: Spec
spec = describe "Network.WarpCore" $ do
  mapM_ modeSpec [WC.Dispatcher, WC.ForkInCallback, WC.InCallback]

  it "moves the worker threads of the default path to SCHED_BATCH" $ bounded $ do
    errors <- newIORef []
    withRawApi localConfig (routes errors) $ \port -> do
      (responseBody <$> get port "/hello") `shouldReturn` "Hello, World!"
      -- The worker that called the C handler (named warpcore-N by the library).
      policies <- threadPolicies
      [p | (name, p) <- policies, "warpcore-" `isPrefixOf` name] `shouldContain` [schedBatch]

  it "runs on Haskell bound threads" $ bounded $ do
    errors <- newIORef []
    withRawApi localConfig {WC.configWorkerThreads = WC.BoundThreads} (routes errors) $ \port ->
      replicateM_ 5 ((responseBody <$> get port "/hello") `shouldReturn` "Hello, World!")

  it "answers dotfiles 404 unless configStaticDotfiles, and serves /.well-known/" $ bounded $ do
    tmp <- getTemporaryDirectory
    let dir = tmp </> "warpcore-hs-dotfiles"
    createDirectoryIfMissing True (dir </> ".git")
    createDirectoryIfMissing True (dir </> ".well-known")
    writeFile (dir </> ".env") "SECRET=1"
    writeFile (dir </> ".git" </> "config") "[core]"
    writeFile (dir </> ".well-known" </> "x") "well-known"
    errors <- newIORef []
    let cfg = localConfig {WC.configStatic = [("/", dir)]}
        status port path = H.statusCode . responseStatus <$> get port path
    WC.withServer cfg (routes errors) $ \s -> do
      let port = WC.serverPort s
      forM_ ["/.env", "/.git/config", "/%2eenv", "/%2Egit/config"] $ \p -> status port p `shouldReturn` 404
      (responseBody <$> get port "/.well-known/x") `shouldReturn` "well-known"
      WC.reload s cfg {WC.configStaticDotfiles = True} (routes errors)
      (responseBody <$> get port "/.env") `shouldReturn` "SECRET=1"
      (responseBody <$> get port "/%2egit/config") `shouldReturn` "[core]"
      WC.reload s cfg (routes errors)
      status port "/.env" `shouldReturn` 404
    removeDirectoryRecursive dir

  it "serves static mounts, logs, counts, reloads and reports" $ bounded $ do
    tmp <- getTemporaryDirectory
    let dir = tmp </> "warpcore-hs-static"
        logFile = tmp </> "warpcore-hs-access.log"
    createDirectoryIfMissing True dir
    writeFile (dir </> "a.txt") "static file"
    lines' <- newIORef B.empty
    errors <- newIORef []
    let cfg =
          localConfig
            { WC.configStatic = [("/static", dir)]
            , WC.configMaxConnections = Just 1000
            , WC.configCoalesceWait = Just 0
            , WC.configFileCache = Just (5000, 1000)
            , WC.configAccessLog = Just (\l -> atomicModifyIORef' lines' (\acc -> (acc <> l, ())))
            , WC.configAccessLogFile = Just logFile -- used by the second server only
            , WC.configErrorLog = Just (\_ _ -> pure ())
            }
    WC.withServer cfg (routes errors) $ \s -> do
      let port = WC.serverPort s
      forM_ [1 .. 3 :: Int] $ \_ -> (responseBody <$> get port "/static/a.txt") `shouldReturn` "static file"
      (responseBody <$> get port "/hello") `shouldReturn` "Hello, World!"
      st <- WC.stats s
      WC.statsRequests st `shouldSatisfy` (>= 4)
      WC.statsResponses2xx st `shouldSatisfy` (>= 4)
      WC.statsCoalesceNaps st `shouldBe` 0
      fc <- WC.fileCacheStats s
      (WC.fileInfoHits fc + WC.fileInfoMisses fc) `shouldSatisfy` (>= 3)
      WC.reload s cfg {WC.configServerName = Just "reloaded"} $ \_ res -> WC.respond res 200 text "new handler"
      r <- get port "/hello"
      responseBody r `shouldBe` "new handler"
      lookup "Server" (responseHeaders r) `shouldBe` Just "reloaded"
      -- Mounts reload too; a missing directory is refused and changes nothing.
      bad <- try (WC.reload s cfg {WC.configStatic = [("/static", dir </> "missing")]} $ \_ res -> WC.respond res 200 text "bad")
      case bad of
        Left (e :: WC.WarpCoreError) -> WC.errorResult e `shouldBe` Raw.resultInvalidArgument
        Right () -> expectationFailure "a reload with a missing directory was accepted"
      -- A worker count past uint32_t is refused, not wrapped to 1.
      huge <- try (WC.start cfg {WC.configWorkers = 2 ^ (32 :: Int) + 1} (\_ res -> WC.respond res 200 text "bad"))
      case huge of
        Left (e :: WC.WarpCoreError) -> WC.errorResult e `shouldBe` Raw.resultInvalidArgument
        Right s' -> WC.shutdown s' 0 >> expectationFailure "2^32 + 1 workers were accepted"
      tooLong <- try (WC.reload s cfg {WC.configCoalesceWait = Just 1001} $ \_ res -> WC.respond res 200 text "bad")
      case tooLong of
        Left (e :: WC.WarpCoreError) -> WC.errorResult e `shouldBe` Raw.resultInvalidArgument
        Right () -> expectationFailure "a coalesce wait over 1 ms was accepted"
      (responseBody <$> get port "/hello") `shouldReturn` "new handler"
      (responseBody <$> get port "/static/a.txt") `shouldReturn` "static file"
      WC.reload s cfg {WC.configStatic = [("/moved", dir)]} $ \_ res -> WC.respond res 200 text "new handler"
      (responseBody <$> get port "/moved/a.txt") `shouldReturn` "static file"
      (responseBody <$> get port "/static/a.txt") `shouldReturn` "new handler"
      WC.reopenLogs s
      WC.shutdown s 1000
      rep <- WC.shutdownReport s
      WC.reportConnectionsCut rep `shouldSatisfy` (>= 0)
    logged <- readIORef lines'
    B8.unpack logged `shouldContain` "GET /static/a.txt"
    WC.withServer cfg {WC.configAccessLog = Nothing} (routes errors) $ \s ->
      (responseBody <$> get (WC.serverPort s) "/static/a.txt") `shouldReturn` "static file"
    fileLog <- B.readFile logFile
    B8.unpack fileLog `shouldContain` "GET /static/a.txt"
    removeDirectoryRecursive dir
    removeFile logFile

  it "reports an address in use" $ bounded $ do
    errors <- newIORef []
    WC.withServer localConfig (routes errors) $ \s -> do
      let cfg = localConfig {WC.configListen = "127.0.0.1:" ++ show (WC.serverPort s)}
      r <- try (WC.withServer cfg (routes errors) (\_ -> pure ()))
      case r of
        Left (e :: WC.WarpCoreError) -> WC.errorResult e `shouldBe` Raw.resultAddressInUse
        Right () -> expectationFailure "second server started"

  it "listens on a Unix socket (configListen unix:PATH), lists its listeners, and keeps the socket across a reload" $ bounded $ do
    tmp <- getTemporaryDirectory
    let dir = tmp </> "warpcore-hs-server-unix"
        path = dir </> "s.sock"
        answerOn body = \_ res -> WC.respond res 200 text body
        ask = do
          s <- socket AF_UNIX Stream defaultProtocol
          (connect s (SockAddrUnix path) >> NSB.sendAll s "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" >> readUntilClosed s)
            `finally` close s
    createDirectoryIfMissing True dir
    flip finally (removeDirectoryRecursive dir) $ do
      WC.withServer localConfig (answerOn "tcp") $ \s ->
        WC.serverListeners s `shouldReturn` ["127.0.0.1:" ++ show (WC.serverPort s)]
      WC.withServer localConfig {WC.configListen = "unix:" ++ path} (answerOn "first") $ \s -> do
        WC.serverListeners s `shouldReturn` ["unix:" ++ path]
        WC.serverPort s `shouldBe` 0
        ask >>= (`shouldSatisfy` ("first" `B.isSuffixOf`))
        WC.reload s localConfig (answerOn "second")
        ask >>= (`shouldSatisfy` ("second" `B.isSuffixOf`))
        WC.serverListeners s `shouldReturn` ["unix:" ++ path]
      -- Removed when the server stopped.
      doesFileExist path `shouldReturn` False

  it "lets requests in progress finish during a graceful shutdown" $ bounded $ do
    started <- newEmptyMVar
    let slow _ res = putMVar started () >> threadDelay 300000 >> WC.respond res 200 text "finished"
    WC.withServer localConfig slow $ \s -> do
      withAsync (get (WC.serverPort s) "/") $ \client -> do
        takeMVar started
        WC.shutdown s 5000
        WC.wait s
        (responseBody <$> wait client) `shouldReturn` "finished"

  it "holds a streaming writer back while the client does not read" $ bounded $ do
    written <- newIORef (0 :: Int)
    finished <- newEmptyMVar
    let total = 64 * 1024 * 1024
        chunk = B8.replicate 65536 'w'
        streamer _ res = do
          WC.startStream res 200 text (Just (fromIntegral total))
          let loop n = when (n < total) $ do
                WC.writeStream res chunk
                atomicModifyIORef' written (\w -> (w + B.length chunk, ()))
                loop (n + B.length chunk)
          loop 0
          WC.endStream res
          putMVar finished ()
        cfg = localConfig {WC.configStreamHighWater = Just (256 * 1024)}
    withRawApi cfg streamer $ \port -> do
      sock <- rawConnect port
      NSB.sendAll sock "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
      -- The writer must come to a stop well short of the whole body.
      let settle :: Int -> Int -> IO Int
          settle tries previous = do
            threadDelay 200000
            now <- readIORef written
            if now == previous || tries == 0 then pure now else settle (tries - 1) now
      stopped <- settle 25 (-1)
      threadDelay 300000
      readIORef written `shouldReturn` stopped
      stopped `shouldSatisfy` (< 24 * 1024 * 1024)
      got <- readUntilCount sock total
      got `shouldBe` total
      takeMVar finished
      close sock
  where
    -- Reads a response whose body has n bytes; returns how many body bytes came.
    readUntilCount sock n = findHead B.empty
      where
        findHead acc = case B.breakSubstring "\r\n\r\n" acc of
          (_, rest) | not (B.null rest) -> count (B.length rest - 4)
          _ -> do
            c <- NSB.recv sock 65536
            if B.null c then pure 0 else findHead (acc <> c)
        count got
          | got >= n = pure got
          | otherwise = do
              c <- NSB.recv sock 1048576
              if B.null c then pure got else count (got + B.length c)
