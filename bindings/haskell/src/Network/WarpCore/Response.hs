{-# LANGUAGE OverloadedStrings #-}
{-# LANGUAGE BangPatterns #-}
-- | Answering a request: a 'Responder' wraps one @warpcore_response@ handle
-- and keeps the C lifetime rules (a finished handle is never touched again).
module Network.WarpCore.Response
  ( Responder
  , ResponderState (..)
  , newResponder
  , newInlineResponder
  , responderState
  , responderInline
  , respondFile
  , respond
  , respondLazy
  , respondBuilder
  , startStream
  , writeStream
  , writeStreamBuilder
  , writeStreamPtr
  , endStream
  , abortResponse
  , finishResponder
  , setReason
  , pauseTimeout
    -- * For "Network.WarpCore.Upgrade"
  , finishWith
  , withHeaders
    -- * Tuning
  , zeroCopyThreshold
  ) where

import Control.Concurrent.MVar
import Control.Exception (catch, mask, onException, throwIO)
import Control.Monad (void, when)
import Data.ByteString (ByteString)
import qualified Data.ByteString as B
import qualified Data.ByteString.Builder as BB
import qualified Data.ByteString.Builder.Extra as BBE
import qualified Data.ByteString.Internal as BI
import qualified Data.ByteString.Lazy as L
import qualified Data.ByteString.Unsafe as BU
import Data.Int (Int64)
import Data.IORef (IORef, atomicModifyIORef', newIORef)
import Data.Word (Word16, Word8)
import Foreign.C.String (peekCString)
import Foreign.C.Types (CChar)
import Foreign.ForeignPtr (withForeignPtr)
import Foreign.Marshal.Alloc (allocaBytes, mallocBytes)
import Foreign.Marshal.Utils (copyBytes)
import Foreign.Ptr (Ptr, castPtr, nullPtr, plusPtr)
import Foreign.StablePtr (castStablePtrToPtr, newStablePtr)
import Foreign.Storable (pokeByteOff, sizeOf)
import System.IO.Unsafe (unsafePerformIO)
import qualified GHC.Foreign as GHC
import GHC.IO.Encoding (getFileSystemEncoding)

import Network.WarpCore.Error
import qualified Network.WarpCore.Raw as Raw

-- | Where a response stands.
data ResponderState
  = Fresh
  -- ^ nothing sent yet
  | Streaming
  -- ^ a stream was started and not ended
  | Finished
  -- ^ answered (or the client went away); the C handle is gone
  deriving (Eq, Show)

-- | The right to answer one request, exactly once. Thread-safe: calls from
-- several threads are serialised.
data Responder = Responder
  { responderPtr :: !(Ptr Raw.Response)
  , responderVar :: !(MVar ResponderState)
  , responderUnsafe :: !Bool
  , responderInline :: !Bool
  -- ^ Answered inside the handler call, on the worker thread (the
  -- 'Network.WarpCore.InCallback' dispatch): 'respondFile' works only there.
  }

-- | Wraps a handle. With @unsafe@ the complete-answer calls use @unsafe@
-- imports (for handles whose handler call is C code that returns promptly).
newResponder :: Bool -> Ptr Raw.Response -> IO Responder
newResponder unsafe ptr = do
  var <- newMVar Fresh
  pure (Responder ptr var unsafe False)

-- | Wraps a handle that is answered inside the handler call.
newInlineResponder :: Ptr Raw.Response -> IO Responder
newInlineResponder ptr = do
  var <- newMVar Fresh
  pure (Responder ptr var False True)

-- | The current state.
responderState :: Responder -> IO ResponderState
responderState = readMVar . responderVar

-- | Bodies at least this long are handed to the library without a copy
-- (kept alive by a StablePtr until its release callback); shorter ones are
-- copied, which is cheaper than the StablePtr round trip.
zeroCopyThreshold :: Int
zeroCopyThreshold = 16384

-- Runs a C call in state `expect`; the result decides the next state. The
-- call is given a buffer for its error message (a @warpcore_hs_*@ import).
transition :: Responder -> String -> ResponderState -> ResponderState -> (Ptr CChar -> IO Raw.Result) -> IO ()
transition r call expect next action = allocaBytes Raw.messageSize $ \buf ->
  mask $ \_ -> do
    st <- takeMVar (responderVar r)
    if st /= expect
      then do
        putMVar (responderVar r) st
        throwIO (WarpCoreError Raw.resultAlreadyAnswered call (misuse st))
      else do
        code <- action buf `onException` putMVar (responderVar r) st
        let st'
              | code == Raw.resultOk = next
              | code == Raw.resultClosed || code == Raw.resultLengthMismatch = Finished
              | otherwise = st
        putMVar (responderVar r) st'
        when (code /= Raw.resultOk) $ do
          message <- peekCString buf
          throwIO (WarpCoreError code call message)
  where
    misuse Fresh = "no stream was started"
    misuse Streaming = "a stream is in progress"
    misuse Finished = "the response was already finished"

-- | Runs a call that finishes a fresh response (a @warpcore_hs_*@ import,
-- given the handle and a message buffer): the responder is 'Finished' when
-- it succeeds or says the client left; otherwise it stays 'Fresh' and the
-- 'WarpCoreError' is thrown. Refused ('Raw.resultAlreadyAnswered') unless
-- the responder is 'Fresh'.
finishWith :: Responder -> String -> (Ptr Raw.Response -> Ptr CChar -> IO Raw.Result) -> IO ()
finishWith r call action = transition r call Fresh Finished (action (responderPtr r))

-- | A status as the library's @uint16_t@. One outside 0..65535 is refused
-- here ('Raw.resultInvalidStatus', as the library refuses one outside
-- 200..599) instead of wrapping into another status (65736 was sent as 200).
statusCode :: String -> Int -> IO Word16
statusCode call status
  | status < 0 || status > fromIntegral (maxBound :: Word16) =
      throwIO (WarpCoreError Raw.resultInvalidStatus call ("status " ++ show status ++ " is out of range"))
  | otherwise = pure (fromIntegral status)

-- | Marshals header fields into one temporary buffer: the @warpcore_header@
-- array followed by the bytes it points to.
withHeaders :: [(ByteString, ByteString)] -> (Ptr Raw.Header -> Int -> IO a) -> IO a
withHeaders hs k = withHeadersAnd hs 0 (\hp n _ _ -> k hp n)

-- | 'withHeaders' with at least @extra@ more bytes of scratch space after the
-- fields (the continuation is given where it starts and how long it is).
-- The buffer is one of a pool of malloc'd 'scratchSize' buffers, reused from
-- response to response, so that marshalling allocates nothing on the GHC
-- heap; larger needs get a one-off pinned allocation.
withHeadersAnd :: [(ByteString, ByteString)] -> Int -> (Ptr Raw.Header -> Int -> Ptr Word8 -> Int -> IO a) -> IO a
withHeadersAnd hs extra k
  | need <= scratchSize = withScratch (fill scratchSize)
  | otherwise = allocaBytes need (fill need)
  where
    !n = length hs
    !arr = n * sizeOf (undefined :: Raw.Header)
    !bytes = sum [B.length a + B.length b | (a, b) <- hs]
    !need = arr + bytes + extra
    fill size buf = do
      let go !_ !_ [] = pure ()
          go !i !at ((name, value) : rest) = do
            at' <- put (i * 32) at name
            at'' <- put (i * 32 + 16) at' value
            go (i + 1) at'' rest
          put off at s = do
            let l = B.length s
            BU.unsafeUseAsCString s $ \src -> copyBytes (buf `plusPtr` at) (castPtr src) l
            pokeByteOff buf off (buf `plusPtr` at :: Ptr Word8)
            pokeByteOff buf (off + 8) (fromIntegral l :: Word)
            pure (at + l)
      go (0 :: Int) arr hs
      k (if n == 0 then nullPtr else castPtr buf) n (buf `plusPtr` (arr + bytes)) (size - arr - bytes)

-- | The size of a marshalling scratch buffer.
scratchSize :: Int
scratchSize = 16384

-- The free scratch buffers. One is taken per marshalling in progress, so
-- the pool grows to the most responses ever marshalled at once (a handful)
-- and stays there.
scratchPool :: IORef [Ptr Word8]
scratchPool = unsafePerformIO (newIORef [])
{-# NOINLINE scratchPool #-}

withScratch :: (Ptr Word8 -> IO a) -> IO a
withScratch k = mask $ \restore -> do
  taken <- atomicModifyIORef' scratchPool $ \free -> case free of
    b : rest -> (rest, b)
    [] -> ([], nullPtr)
  buf <- if taken == nullPtr then mallocBytes scratchSize else pure taken
  let release = atomicModifyIORef' scratchPool (\free -> (buf : free, ()))
  r <- restore (k buf) `onException` release
  release
  pure r

-- | Answers with a complete body. Throws 'WarpCoreError' on failure
-- (@CLOSED@ when the client went away: the response is then finished anyway).
respond :: Responder -> Int -> [(ByteString, ByteString)] -> ByteString -> IO ()
respond r status hs body = do
  st <- statusCode "warpcore_respond" status
  transition r "warpcore_respond" Fresh Finished $ \msg ->
    withHeaders hs $ \hp n ->
      if B.length body < zeroCopyThreshold
        then BU.unsafeUseAsCStringLen body $ \(bp, bl) ->
          (if responderUnsafe r then Raw.c_warpcore_hs_respond_unsafe else Raw.c_warpcore_hs_respond)
            (responderPtr r) st hp (fromIntegral n) (castPtr bp) (fromIntegral bl) msg
        else do
          let (fp, off, len) = BI.toForeignPtr body
          sp <- newStablePtr body
          withForeignPtr fp $ \p ->
            (if responderUnsafe r then Raw.c_warpcore_hs_respond_buffer_unsafe else Raw.c_warpcore_hs_respond_buffer)
              (responderPtr r) st hp (fromIntegral n) (p `plusPtr` off) (fromIntegral len)
              Raw.p_warpcore_hs_release_stable (castStablePtrToPtr sp) msg

-- | Answers with a file, as the library's static mounts do (Content-Type,
-- Last-Modified, ETag, ranges and conditional requests for a 200; sendfile).
-- Only inside the handler call ('responderInline'); otherwise, and for a
-- missing or unreadable file, it throws ('Raw.resultInvalidState',
-- 'Raw.resultIoError') and the request may still be answered.
respondFile :: Responder -> Int -> [(ByteString, ByteString)] -> FilePath -> IO ()
respondFile r status hs path = do
  enc <- getFileSystemEncoding
  st <- statusCode "warpcore_respond_file" status
  transition r "warpcore_respond_file" Fresh Finished $ \msg ->
    withHeaders hs $ \hp n ->
      GHC.withCStringLen enc path $ \(pp, pl) ->
        Raw.c_warpcore_hs_respond_file (responderPtr r) st hp (fromIntegral n) (castPtr pp) (fromIntegral pl) msg

-- | Answers with a lazy body: one chunk goes as 'respond'; several small ones
-- are joined; large ones are joined into one malloc'd buffer handed over without
-- another copy.
respondLazy :: Responder -> Int -> [(ByteString, ByteString)] -> L.ByteString -> IO ()
respondLazy r status hs lbs = case L.toChunks lbs of
  [] -> respond r status hs B.empty
  [one] -> respond r status hs one
  chunks -> respondChunks r status hs chunks

respondChunks :: Responder -> Int -> [(ByteString, ByteString)] -> [ByteString] -> IO ()
respondChunks r status hs chunks
  | total < zeroCopyThreshold = respond r status hs (B.concat chunks)
  | otherwise = do
      st <- statusCode "warpcore_respond_buffer" status
      transition r "warpcore_respond_buffer" Fresh Finished $ \msg ->
        withHeaders hs $ \hp n -> do
          buf <- mallocBytes total
          let go !_ [] = pure ()
              go !at (c : cs) = do
                BU.unsafeUseAsCStringLen c $ \(src, l) -> copyBytes (buf `plusPtr` at) (castPtr src) l
                go (at + B.length c) cs
          go 0 chunks
          (if responderUnsafe r then Raw.c_warpcore_hs_respond_buffer_unsafe else Raw.c_warpcore_hs_respond_buffer)
            (responderPtr r) st hp (fromIntegral n) buf (fromIntegral total)
            Raw.p_warpcore_hs_release_free (castPtr buf) msg
  where
    total = sum (map B.length chunks)

-- | Answers with a body made by a 'BB.Builder'. A body that fits a small
-- buffer is built there and copied by the library; a larger one is built in
-- chunks.
respondBuilder :: Responder -> Int -> [(ByteString, ByteString)] -> BB.Builder -> IO ()
respondBuilder r status hs builder = do
  st <- statusCode "warpcore_respond" status
  spill <-
    withHeadersAnd hs firstSize $ \hp n buf size -> do
      (used, next) <- BBE.runBuilder builder buf size
      case next of
        BBE.Done -> do
          -- Small body: answer straight from the temporary buffer.
          transition r "warpcore_respond" Fresh Finished $
            (if responderUnsafe r then Raw.c_warpcore_hs_respond_unsafe else Raw.c_warpcore_hs_respond)
              (responderPtr r) st hp (fromIntegral n) buf (fromIntegral used)
          pure Nothing
        _ -> do
          first <- B.packCStringLen (castPtr buf, used)
          pure (Just (first, next))
  case spill of
    Nothing -> pure ()
    Just (first, next) -> do
      rest <- drain next
      respondChunks r status hs (filter (not . B.null) (first : rest))
  where
    firstSize = 2048

-- Runs the rest of a builder into fresh chunks.
drain :: BBE.Next -> IO [ByteString]
drain BBE.Done = pure []
drain (BBE.More minSize writer) = do
  let size = max minSize BBE.smallChunkSize
  fp <- BI.mallocByteString size
  (used, next) <- withForeignPtr fp $ \p -> writer p size
  rest <- drain next
  pure (BI.fromForeignPtr fp 0 used : rest)
drain (BBE.Chunk bs writer) = do
  -- A large strict chunk inserted as is.
  (bs :) <$> drain (BBE.More 0 writer)

-- | Starts a streamed response; @Just n@ promises exactly @n@ body bytes,
-- @Nothing@ streams chunked.
startStream :: Responder -> Int -> [(ByteString, ByteString)] -> Maybe Int64 -> IO ()
startStream r status hs len = do
  st <- statusCode "warpcore_response_start" status
  -- -1 is the library's "chunked": any other negative length is refused
  -- here rather than taken for it.
  case len of
    Just l | l < 0 -> throwIO (WarpCoreError Raw.resultInvalidArgument "warpcore_response_start" ("content length " ++ show l ++ " is negative"))
    _ -> pure ()
  transition r "warpcore_response_start" Fresh Streaming $ \msg ->
    withHeaders hs $ \hp n ->
      (if responderUnsafe r then Raw.c_warpcore_hs_response_start_unsafe else Raw.c_warpcore_hs_response_start)
        (responderPtr r) st hp (fromIntegral n) (maybe (-1) id len) msg

-- | Sends more of a started stream. From a thread other than the worker's it
-- waits while the connection has more than the high-water mark queued (the
-- call is @safe@: other Haskell threads keep running). Large chunks go without
-- a copy.
writeStream :: Responder -> ByteString -> IO ()
writeStream r bs
  | B.null bs = pure ()
  | B.length bs < zeroCopyThreshold =
      transition r "warpcore_response_write" Streaming Streaming $ \msg ->
        BU.unsafeUseAsCStringLen bs $ \(p, l) ->
          Raw.c_warpcore_hs_response_write (responderPtr r) (castPtr p) (fromIntegral l) msg
  | otherwise =
      transition r "warpcore_response_write_buffer" Streaming Streaming $ \msg -> do
        let (fp, off, len) = BI.toForeignPtr bs
        sp <- newStablePtr bs
        withForeignPtr fp $ \p ->
          Raw.c_warpcore_hs_response_write_buffer (responderPtr r) (p `plusPtr` off) (fromIntegral len)
            Raw.p_warpcore_hs_release_stable (castStablePtrToPtr sp) msg

-- | Sends @len@ bytes at a pointer on a started stream; the library copies
-- them during the call, so the buffer may be reused right after.
writeStreamPtr :: Responder -> Ptr Word8 -> Int -> IO ()
writeStreamPtr r p len =
  transition r "warpcore_response_write" Streaming Streaming $
    Raw.c_warpcore_hs_response_write (responderPtr r) p (fromIntegral len)

-- | Sends a builder's bytes (in chunks of about 32 KiB) on a started stream.
writeStreamBuilder :: Responder -> BB.Builder -> IO ()
writeStreamBuilder r b =
  mapM_ (writeStream r) (L.toChunks (BBE.toLazyByteStringWith (BBE.untrimmedStrategy 4096 32768) L.empty b))

-- | Ends a started stream.
endStream :: Responder -> IO ()
endStream r = transition r "warpcore_response_end" Streaming Finished (Raw.c_warpcore_hs_response_end (responderPtr r))

-- | Gives up on the answer (the error path of 'endStream'): before anything
-- was sent the client gets 500 and the connection closes; mid-stream the
-- connection closes after what was written, without the stream's end, so the
-- client sees an incomplete body.
abortResponse :: Responder -> IO ()
abortResponse r = do
  st <- responderState r
  transition r "warpcore_response_abort" st Finished (Raw.c_warpcore_hs_response_abort (responderPtr r))

-- | Sets the reason phrase of the status line the answer will send
-- (@HTTP/1.1 200 Fine@), in place of the library's for its code
-- (@warpcore_response_set_reason@). Before the answer begins; throws
-- 'WarpCoreError' ('Raw.resultInvalidStatus') for a phrase with CR, LF or
-- another control byte, ('Raw.resultAlreadyAnswered') once it began.
setReason :: Responder -> ByteString -> IO ()
setReason r reason = allocaBytes Raw.messageSize $ \buf -> do
  st <- readMVar (responderVar r)
  when (st /= Fresh) $ throwIO (WarpCoreError Raw.resultAlreadyAnswered "warpcore_response_set_reason" "the answer began")
  code <- BU.unsafeUseAsCStringLen reason $ \(p, l) ->
    Raw.c_warpcore_hs_response_set_reason (responderPtr r) (castPtr p) (fromIntegral l) buf
  when (code /= Raw.resultOk) $ do
    message <- peekCString buf
    throwIO (WarpCoreError code "warpcore_response_set_reason" message)

-- | Pauses the answer timeout for this request (Warp's @pauseTimeout@;
-- @warpcore_response_pause_timeout@): the answer may take as long as it
-- needs to begin. Does nothing once the answer is finished; never throws.
pauseTimeout :: Responder -> IO ()
pauseTimeout r = do
  st <- readMVar (responderVar r)
  when (st /= Finished) $
    allocaBytes Raw.messageSize $ \buf -> void (Raw.c_warpcore_hs_response_pause_timeout (responderPtr r) buf)

-- | Makes sure the handle is released: answers 500 if nothing was sent,
-- aborts a stream still open (the client sees it incomplete). Errors (the
-- client gone) are ignored.
finishResponder :: Responder -> IO ()
finishResponder r = do
  st <- responderState r
  case st of
    Fresh -> ignore (respond r 500 [("Content-Type", "text/plain")] "Internal Server Error\n")
    Streaming -> ignore (abortResponse r)
    Finished -> pure ()
  where
    ignore act = act `catch` \e -> let _ = e :: WarpCoreError in pure ()
