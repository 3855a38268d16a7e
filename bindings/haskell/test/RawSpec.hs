{-# LANGUAGE OverloadedStrings #-}
-- | The C API through Network.WarpCore.Raw alone.
module RawSpec (spec) where

import Control.Concurrent
import Control.Exception (finally)
import Control.Monad (forM, forM_, void, when)
import qualified Data.ByteString as B
import qualified Data.ByteString.Char8 as B8
import qualified Data.ByteString.Lazy as L
import qualified Data.ByteString.Unsafe as BU
import Data.IORef
import Foreign.C.String (peekCString)
import Foreign.C.Types (CBool (..), CSize (..))
import Foreign.Marshal.Alloc (alloca, allocaBytes)
import Foreign.Marshal.Array (withArrayLen)
import Foreign.Ptr
import Foreign.Storable
import Foreign.StablePtr (freeStablePtr)
import GHC.Conc (newStablePtrPrimMVar)
import qualified Network.Socket.ByteString as NSB
import Network.HTTP.Client (responseBody, responseHeaders, responseStatus)
import qualified Network.HTTP.Types as H
import Test.Hspec

import Network.WarpCore.Raw
import Util

foreign import ccall "wrapper"
  mkRelease :: ReleaseCallback -> IO (FunPtr ReleaseCallback)

ok :: IO Result -> Expectation
ok act = act `shouldReturn` resultOk

newConfig :: IO (Ptr Config)
newConfig = alloca $ \out -> do
  ok (c_warpcore_config_new out)
  peek out

setListen :: Ptr Config -> B.ByteString -> IO Result
setListen c addr = BU.unsafeUseAsCStringLen addr $ \(p, l) -> c_warpcore_config_set_listen c (castPtr p) (fromIntegral l)

startServer :: Ptr Config -> IO (Result, Ptr Server)
startServer c = alloca $ \out -> do
  poke out nullPtr
  r <- c_warpcore_server_start c out
  s <- peek out
  pure (r, s)

-- Copies a borrowed string.
str :: Str -> IO B.ByteString
str (Str p l) = B.packCStringLen (castPtr p, fromIntegral l)

withHeader :: B.ByteString -> B.ByteString -> (Ptr Header -> IO a) -> IO a
withHeader name value k =
  BU.unsafeUseAsCStringLen name $ \(np, nl) ->
    BU.unsafeUseAsCStringLen value $ \(vp, vl) ->
      withArrayLen [Header (Str (castPtr np) (fromIntegral nl)) (Str (castPtr vp) (fromIntegral vl))] $ \_ hp -> k hp

respondText :: Ptr Response -> Int -> B.ByteString -> IO Result
respondText res status body =
  withHeader "Content-Type" "text/plain" $ \hp ->
    BU.unsafeUseAsCStringLen body $ \(bp, bl) ->
      c_warpcore_respond res (fromIntegral status) hp 1 (castPtr bp) (fromIntegral bl)

-- Starts a server on 127.0.0.1:0 with a Haskell callback; frees everything after.
withCallbackServer :: (Ptr Config -> IO ()) -> HandlerCallback -> (Ptr Server -> Int -> IO a) -> IO a
withCallbackServer tweak cb act = do
  fp <- mkHandlerCallback cb
  c <- newConfig
  ok (setListen c "127.0.0.1:0")
  ok (c_warpcore_config_set_handler c fp nullPtr)
  tweak c
  (r, s) <- startServer c
  c_warpcore_config_free c
  r `shouldBe` resultOk
  port <- fromIntegral <$> c_warpcore_server_port s
  act s port `finally` (c_warpcore_server_free s >> freeHaskellFunPtr fp)

spec :: Spec
spec = describe "Network.WarpCore.Raw" $ do
  it "describes result codes and gives the version" $ do
    (c_warpcore_result_str resultOk >>= peekCString) `shouldReturn` "success"
    (c_warpcore_result_str resultClosed >>= peekCString) `shouldReturn` "the client has gone away"
    (c_warpcore_result_str 9999 >>= peekCString) `shouldReturn` "unknown result code"
    v <- c_warpcore_version >>= peekCString
    length (filter (== '.') v) `shouldBe` 2

  it "refuses a bad address and a missing handler, with a message" $ bounded $ do
    c <- newConfig
    (r0, _) <- startServer c
    r0 `shouldBe` resultInvalidArgument
    ok (c_warpcore_config_set_handler c p_warpcore_hs_handler nullPtr)
    ok (setListen c "not an address")
    (r1, s) <- startServer c
    r1 `shouldBe` resultInvalidAddress
    s `shouldBe` nullPtr
    n <- c_warpcore_last_error_message nullPtr 0
    n `shouldSatisfy` (> 0)
    msg <- allocaBytes (fromIntegral n + 1) $ \buf -> do
      _ <- c_warpcore_last_error_message buf (n + 1)
      peekCString buf
    length msg `shouldBe` fromIntegral n
    c_warpcore_config_free c
    c_warpcore_config_free nullPtr
    c_warpcore_server_free nullPtr
    c_warpcore_server_port nullPtr `shouldReturn` 0
    c_warpcore_server_workers nullPtr `shouldReturn` 0

  it "checks settings when starting" $ bounded $ do
    let bad set = do
          c <- newConfig
          ok (c_warpcore_config_set_handler c p_warpcore_hs_handler nullPtr)
          ok (setListen c "127.0.0.1:0")
          r <- set c
          (r', s) <- if r == resultOk then startServer c else pure (r, nullPtr)
          c_warpcore_server_free s
          c_warpcore_config_free c
          pure r'
    bad (\c -> c_warpcore_config_set_workers c 5000) `shouldReturn` resultInvalidArgument
    bad (\c -> c_warpcore_config_set_timeout c timeoutIdle 10) `shouldReturn` resultInvalidArgument
    bad (\c -> c_warpcore_config_set_max_header_count c 0) `shouldReturn` resultInvalidArgument
    bad (\c -> c_warpcore_config_set_stream_high_water c 1) `shouldReturn` resultInvalidArgument

  it "answers inside a wrapper callback, with every setter applied" $ bounded $ do
    seen <- newEmptyMVar
    let cb _ view res = do
          v <- peek view
          m <- str (viewMethod v)
          p <- str (viewPath v)
          q <- str (viewQuery v)
          b <- str (viewBody v)
          hs <- forM [0 .. fromIntegral (viewHeaderCount v) - 1] $ \i -> do
            Header n val <- peekElemOff (viewHeaders v) i
            (,) <$> str n <*> str val
          ip <- str (viewPeerIp v)
          void (tryPutMVar seen (m, p, q, b, lookup "X-Test" hs, ip, viewVersionMinor v))
          void (respondText res 200 ("you sent " <> b))
        tweak c = do
          ok (c_warpcore_config_set_workers c 2)
          ok (c_warpcore_config_set_share_port c (CBool 0))
          ok (B8.useAsCStringLen "raw-test" $ \(p, l) -> c_warpcore_config_set_server_name c (castPtr p) (fromIntegral l))
          ok (c_warpcore_config_set_max_body_size c 4096)
          ok (c_warpcore_config_set_max_head_size c 16384)
          ok (c_warpcore_config_set_max_request_line c 4096)
          ok (c_warpcore_config_set_max_header_count c 50)
          ok (c_warpcore_config_set_stream_high_water c 65536)
          ok (c_warpcore_config_set_max_connections c 100)
          ok (c_warpcore_config_set_file_cache c 1000 1000)
          ok (c_warpcore_config_set_static_dotfiles c (CBool 0))
          forM_ [timeoutHeader, timeoutIdle, timeoutBody, timeoutWrite, timeoutAnswer] $ \t ->
            ok (c_warpcore_config_set_timeout c t 5000)
    withCallbackServer tweak cb $ \s port -> do
      c_warpcore_server_workers s `shouldReturn` 2
      rsp <- request port "POST" "/a%20b?x=1" [("X-Test", "yes")] "hello"
      responseBody rsp `shouldBe` "you sent hello"
      lookup "Server" (responseHeaders rsp) `shouldBe` Just "raw-test"
      takeMVar seen `shouldReturn` ("POST", "/a b", "x=1", "hello", Just "yes", "127.0.0.1", 1)
      big <- post port "/" (L.replicate 5000 120)
      H.statusCode (responseStatus big) `shouldBe` 413
      ok (c_warpcore_server_shutdown s 1000)
      ok (c_warpcore_server_wait s)

  it "answers later from another thread, streams, and releases every buffer once" $ bounded $ do
    queued <- newChan
    released <- newIORef (0 :: Int)
    rel <- mkRelease $ \_ _ _ -> atomicModifyIORef' released (\n -> (n + 1, ()))
    let cb _ _ res = writeChan queued res
        answer = do
          res <- readChan queued
          ok (withHeader "Content-Type" "text/plain" $ \hp -> c_warpcore_response_start res 200 hp 1 (-1))
          forM_ [1 .. 10 :: Int] $ \i ->
            ok (BU.unsafeUseAsCStringLen (B8.pack (show i ++ ",")) $ \(p, l) -> c_warpcore_response_write res (castPtr p) (fromIntegral l))
          let tailBytes = "end" :: B.ByteString
          ok (BU.unsafeUseAsCStringLen tailBytes $ \(p, l) -> c_warpcore_response_write_buffer res (castPtr p) (fromIntegral l) rel nullPtr)
          ok (c_warpcore_response_end res)
          -- Second request: a zero-copy complete answer.
          res2 <- readChan queued
          let body = B8.replicate 100000 'z'
          ok (BU.unsafeUseAsCStringLen body $ \(p, l) -> c_warpcore_respond_buffer res2 200 nullPtr 0 (castPtr p) (fromIntegral l) rel nullPtr)
    withCallbackServer (\_ -> pure ()) cb $ \_ port -> do
      _ <- forkIO answer
      r1 <- get port "/stream"
      responseBody r1 `shouldBe` "1,2,3,4,5,6,7,8,9,10,end"
      lookup "Transfer-Encoding" (responseHeaders r1) `shouldBe` Just "chunked"
      r2 <- get port "/big"
      L.length (responseBody r2) `shouldBe` 100000
    readIORef released `shouldReturn` 2
    freeHaskellFunPtr rel

  it "returns CLOSED for an answer after shutdown, and refuses a second answer" $ bounded $ do
    held <- newEmptyMVar
    let cb _ _ res = putMVar held res
    withCallbackServer (\_ -> pure ()) cb $ \s port -> do
      sock <- rawConnect port
      _ <- sendRequest sock
      res <- takeMVar held
      ok (c_warpcore_server_shutdown s 0)
      respondText res 200 "late" `shouldReturn` resultClosed
    let cb2 _ _ res = do
          r1 <- respondText res 200 "first"
          r2 <- respondText res 200 "second"
          putMVar held (intPtrToPtr (fromIntegral (r1 * 100 + r2)))
    withCallbackServer (\_ -> pure ()) cb2 $ \_ port -> do
      rsp <- get port "/"
      responseBody rsp `shouldBe` "first"
      code <- ptrToIntPtr <$> takeMVar held
      code `shouldBe` fromIntegral (resultOk * 100 + resultAlreadyAnswered)

  it "fills sized structs, and refuses a size below the first version's" $ bounded $ do
    let cb _ _ res = void (respondText res 200 "counted")
    withCallbackServer (\_ -> pure ()) cb $ \s port -> do
      _ <- get port "/"
      st <- allocaSized $ \p -> ok (c_warpcore_server_stats s p) >> peek p
      statsRequests st `shouldBe` 1
      allocaSized $ \p -> do
        poke (castPtr p) (8 :: CSize)
        c_warpcore_server_stats s p `shouldReturn` resultInvalidArgument
      fc <- allocaSized $ \p -> ok (c_warpcore_server_file_cache_stats s p) >> peek p
      fileFdHits fc `shouldBe` 0
      ok (c_warpcore_server_shutdown s 1000)
      report <- allocaSized $ \p -> ok (c_warpcore_server_shutdown_report s p) >> peek p
      reportConnectionsCut report `shouldBe` 0

  it "runs workers on threads the program gives it" $ bounded $ do
    let cb _ _ res = void (respondText res 200 "external")
    withCallbackServer (\c -> ok (c_warpcore_config_set_external_workers c (CBool 1)) >> ok (c_warpcore_config_set_workers c 2)) cb $ \s port -> do
      c_warpcore_server_run_worker s 7 `shouldReturn` resultInvalidState
      dones <- forM [0, 1] $ \i -> do
        done <- newEmptyMVar
        _ <- forkOS (c_warpcore_server_run_worker s i >>= putMVar done)
        pure done
      forM_ [1 .. 4 :: Int] $ \_ -> do
        rsp <- get port "/"
        responseBody rsp `shouldBe` "external"
      ok (c_warpcore_server_shutdown s 1000)
      forM_ dones $ \d -> takeMVar d `shouldReturn` resultOk

  it "queues requests for a Haskell dispatcher (cbits)" $ bounded $ do
    d <- c_warpcore_hs_dispatch_new 1
    c <- newConfig
    ok (setListen c "127.0.0.1:0")
    ok (c_warpcore_config_set_handler c p_warpcore_hs_handler (castPtr d))
    (r, s) <- startServer c
    c_warpcore_config_free c
    r `shouldBe` resultOk
    port <- fromIntegral <$> c_warpcore_server_port s
    let serveOne = alloca $ \out -> do
          mv <- newEmptyMVar
          sp <- newStablePtrPrimMVar mv
          got <- c_warpcore_hs_dispatch_take d 0 sp 0 out
          when (got == 0) (takeMVar mv)
          when (got /= 1) $ do
            sp2 <- newStablePtrPrimMVar mv
            1 <- c_warpcore_hs_dispatch_take d 0 sp2 0 out
            pure ()
          item <- peek out
          itemNext item `shouldReturn` nullPtr
          v <- peek (itemRequest item)
          target <- str (viewTarget v)
          res <- itemResponse item
          c_warpcore_hs_item_free item
          ok (respondText res 200 ("queued " <> target))
    _ <- forkIO serveOne
    rsp <- get port "/q?x"
    responseBody rsp `shouldBe` "queued /q?x"
    c_warpcore_hs_dispatch_close d
    alloca $ \out -> do
      mv <- newEmptyMVar
      sp <- newStablePtrPrimMVar mv
      c_warpcore_hs_dispatch_take d 0 sp 0 out `shouldReturn` (-1)
      freeStablePtr sp
    c_warpcore_server_free s
    c_warpcore_hs_dispatch_free d
  where
    sendRequest sock = NSB.sendAll sock "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
