{-# LANGUAGE OverloadedStrings #-}
-- | Where a request's time goes when it crosses between the engine and
-- Haskell, piece by piece, without sockets:
--
-- * an @unsafe@ and a @safe@ foreign call;
-- * a @"wrapper"@ callback entered from a thread GHC did not create (what
--   'ForkInCallback' and 'InCallback' pay per request);
-- * @forkIO@ of a request thread;
-- * the C handler's copy of a request plus 'readItem' (the dispatcher path)
--   and 'readView' (the callback paths), then the WAI request;
-- * marshalling a response (header array + builder run), without the call.
--
-- Build and run (after make haskell):
--
-- > ghc -O2 -threaded -package-db build/haskell/dist/package.conf.inplace \
-- >   -package warpcore bindings/haskell/bench/Crossing.hs bindings/haskell/bench/crossing.c \
-- >   -outputdir build/haskell/obj-crossing -o build/crossing-hs && build/crossing-hs
module Main (main) where

import Control.Concurrent
import Control.Exception (evaluate)
import Control.Monad (forM_, replicateM_, void)
import qualified Data.ByteString as B
import qualified Data.ByteString.Builder as BB
import qualified Data.ByteString.Builder.Extra as BBE
import qualified Data.ByteString.Unsafe as BU
import Data.IORef
import Foreign.Marshal.Alloc (alloca, allocaBytes)
import Foreign.Marshal.Array (withArrayLen)
import Foreign.Ptr
import Foreign.Storable
import GHC.Clock (getMonotonicTimeNSec)
import GHC.Conc (newStablePtrPrimMVar)
import Network.Wai (rawPathInfo, requestMethod)
import Text.Printf (printf)

import Network.Wai.Handler.WarpCore (toWaiRequest)
import qualified Network.WarpCore.Raw as Raw
import Network.WarpCore.Request (readItem, readView)

foreign import ccall unsafe "warpcore_version" versionUnsafe :: IO (Ptr ())
foreign import ccall safe "warpcore_version" versionSafe :: IO (Ptr ())
foreign import ccall "wrapper" mkCallback :: IO () -> IO (FunPtr (IO ()))
foreign import ccall safe "crossing_call_from_foreign" callFromForeign :: FunPtr (IO ()) -> Int -> IO Double
foreign import ccall "dynamic" callHandler :: FunPtr Raw.HandlerCallback -> Raw.HandlerCallback

-- Nanoseconds per iteration of an action run n times.
per :: Int -> IO () -> IO Double
per n act = do
  t0 <- getMonotonicTimeNSec
  replicateM_ n act
  t1 <- getMonotonicTimeNSec
  pure (fromIntegral (t1 - t0) / fromIntegral n)

report :: String -> Double -> IO ()
report what ns = printf "%-62s %8.0f ns\n" what ns

-- A request view like wrk's: GET / with a Host header.
withView :: (Ptr Raw.RequestView -> IO a) -> IO a
withView k =
  BU.unsafeUseAsCStringLen "GET/127.0.0.1:8080Host127.0.0.1" $ \(p0, _) -> do
    let p = castPtr p0
        str off len = Raw.Str (p `plusPtr` off) len
    withArrayLen [Raw.Header (str 18 4) (str 3 14)] $ \_ hp ->
      alloca $ \vp -> do
        poke vp Raw.RequestView
          { Raw.viewMethod = str 0 3, Raw.viewTarget = str 3 1, Raw.viewPath = str 3 1
          , Raw.viewQuery = Raw.Str nullPtr 0, Raw.viewHeaders = hp, Raw.viewHeaderCount = 1
          , Raw.viewBody = Raw.Str nullPtr 0, Raw.viewPeerIp = str 4 9, Raw.viewPeerPort = 40000
          , Raw.viewVersionMajor = 1, Raw.viewVersionMinor = 1, Raw.viewWorkerIndex = 0
          , Raw.viewBodyFollows = False }
        k vp

main :: IO ()
-- Unbound, as the binding's request threads are (main is a bound thread).
main = runInUnboundThread $ do
  caps <- getNumCapabilities
  printf "capabilities: %d\n" caps
  report "unsafe foreign call (warpcore_version)" =<< per 10000000 (void versionUnsafe)
  report "safe foreign call (warpcore_version)" =<< per 2000000 (void versionSafe)

  counter <- newIORef (0 :: Int)
  cb <- mkCallback (modifyIORef' counter (+ 1))
  secs <- callFromForeign cb 200000
  report "\"wrapper\" callback from a foreign thread (runtime idle)" (secs * 1e9 / 200000)
  -- The same while another Haskell thread keeps the capability busy.
  busy <- forkIO (let spin = yield >> spin in spin)
  secs' <- callFromForeign cb 20000
  report "\"wrapper\" callback from a foreign thread (a thread yield-spins)" (secs' * 1e9 / 20000)
  killThread busy

  done <- newEmptyMVar
  report "forkIO of a thread that fills an MVar, and the take" =<< per 200000 (forkIO (putMVar done ()) >> takeMVar done)

  d <- Raw.c_warpcore_hs_dispatch_new 1
  let handler = callHandler Raw.p_warpcore_hs_handler
  withView $ \vp -> do
    report "readView: copy the borrowed request (callback paths)" =<< per 500000 (readView vp >>= evaluate >> pure ())
    mv <- newEmptyMVar
    sp <- newStablePtrPrimMVar mv
    alloca $ \out ->
      report "C handler copy + queue + take + readItem (dispatcher path)" =<< per 500000 (do
        handler (castPtr d) vp nullPtr
        _ <- Raw.c_warpcore_hs_dispatch_take d 0 sp 0 out
        item <- peek out
        (req, _) <- readItem item
        void (evaluate req))
    req <- readView vp
    report "WAI Request from it (method and path forced)" =<< per 500000 (do
      w <- toWaiRequest req
      void (evaluate (B.length (requestMethod w) + B.length (rawPathInfo w))))
  report "response marshalling: header array + 13-byte builder run" =<< per 1000000 (
    allocaBytes (32 + 22 + 2048) $ \buf -> do
      forM_ [(0 :: Int)] $ \_ -> do
        pokeByteOff buf 0 (buf `plusPtr` 32 :: Ptr ())
        pokeByteOff buf 8 (12 :: Word)
      (n, _) <- BBE.runBuilder (BB.lazyByteString "Hello, World!") (buf `plusPtr` 54) 2048
      void (evaluate n))
  Raw.c_warpcore_hs_dispatch_close d
  -- dispatch_free would answer leftover items; there are none.
  Raw.c_warpcore_hs_dispatch_free d
