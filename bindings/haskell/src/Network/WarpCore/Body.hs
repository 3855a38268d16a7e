{-# LANGUAGE BangPatterns #-}
-- | A request body that streams: read chunk by chunk as it arrives, instead
-- of whole in 'Network.WarpCore.requestBody'.
--
-- The library hands a body to the handler whole when it is at most the
-- whole-body maximum ('Network.WarpCore.configWholeBodyMax', library
-- default 1 MiB); a larger one streams. The handler is then called once the
-- request head is in, 'Network.WarpCore.requestBody' is empty and
-- 'Network.WarpCore.requestBodyReader' holds a 'BodyReader'.
--
-- Reads are @safe@ foreign calls that wait for the client's bytes: the
-- calling green thread blocks, the capability goes on running other Haskell
-- threads (each reader blocked at once holds an OS thread of the runtime).
-- The library holds at most 64 KiB of a body for its reader and reads no
-- more from the connection until the reader takes them, so a client that
-- sends faster than the handler reads is slowed down by TCP. A client that
-- sent @Expect: 100-continue@ is told to send its body at the first read.
-- A client that stops sending is cut by the body timeout
-- ('Network.WarpCore.BodyTimeout'): the read then throws.
--
-- Every dispatch mode reads on a green thread: 'Network.WarpCore.InCallback'
-- runs a request whose body streams on a green thread of its own, as
-- 'Network.WarpCore.ForkInCallback' does, because the worker thread the
-- handler would run on is the one that reads the body from the connection
-- (a read there never waits: the library answers it
-- 'Network.WarpCore.Raw.resultWouldBlock').
module Network.WarpCore.Body
  ( BodyReader
  , readChunk
  , readChunkUpTo
  , discardBody
  , releaseBody
  , bodyAsked
  , chunkSize
    -- * For the binding
  , newBodyReader
  , takeBodyReader
  , finishBody
  , engineBodyFlush
  ) where

import Control.Concurrent.MVar
import Control.Exception (SomeException, mask_, throwIO, try)
import Control.Monad (when)
import Data.ByteString (ByteString)
import qualified Data.ByteString as B
import qualified Data.ByteString.Internal as BI
import Data.IORef
import Data.Word (Word8)
import Foreign.C.String (peekCString)
import Foreign.C.Types (CChar, CSize)
import Foreign.ForeignPtr (withForeignPtr)
import Foreign.Marshal.Alloc (alloca, allocaBytes)
import Foreign.Ptr (Ptr, nullPtr)
import Foreign.Storable (peek)

import Network.WarpCore.Error
import qualified Network.WarpCore.Raw as Raw

-- | The reader of one request's body. Reads from several threads are
-- serialised (each takes the next bytes). The binding releases it once the
-- handler has returned (after discarding what is left, see
-- 'Network.WarpCore.configMaximumBodyFlush'); a read after that throws.
data BodyReader = BodyReader
  { readerPtr :: !(MVar (Ptr Raw.Body))
  -- ^ The C reader; 'nullPtr' once released (or when it could not be taken).
  , readerStarted :: !(IORef Bool)
  -- ^ A read was asked for (a @100 Continue@ owed was then sent).
  , readerEnded :: !(IORef Bool)
  -- ^ The end of the body was read.
  }

instance Eq BodyReader where
  a == b = readerPtr a == readerPtr b

instance Show BodyReader where
  show _ = "<BodyReader>"

-- | The most a 'readChunk' returns: the library's window.
chunkSize :: Int
chunkSize = 65536

-- | What the library discards itself of a body its reader left unread
-- before it closes the connection instead (@MAX_BODY_FLUSH@, 256 KiB).
engineBodyFlush :: Int
engineBodyFlush = 256 * 1024

-- | Wraps a C reader (owned from now on; 'nullPtr' makes a reader whose
-- reads throw).
newBodyReader :: Ptr Raw.Body -> IO BodyReader
newBodyReader p = BodyReader <$> newMVar p <*> newIORef False <*> newIORef False

-- | Takes the reader of the request being handled (inside the handler
-- call, on its worker thread: the callback modes). A reader that cannot be
-- taken gives a 'BodyReader' whose reads throw.
takeBodyReader :: Ptr Raw.Response -> IO BodyReader
takeBodyReader res = mask_ $ alloca $ \out -> allocaBytes Raw.messageSize $ \msg -> do
  code <- Raw.c_warpcore_hs_response_body res out msg
  newBodyReader =<< (if code == Raw.resultOk then peek out else pure nullPtr)

-- | The next bytes of the body as they arrive, at most 'chunkSize'; empty at
-- its end (and at every later call). Waits for the client. Throws
-- 'WarpCoreError': 'Raw.resultClosed' when the body cannot be had whole (the
-- client left or stopped sending past the body timeout, the body passed
-- the maximum body size — the client was answered @413@ if the answer had
-- not begun —, its chunked framing was invalid); 'Raw.resultInvalidState'
-- once the binding released the reader; 'Raw.resultWouldBlock' when called
-- on a worker thread (inside an 'Network.WarpCore.InCallback' handler of
-- another request), where it cannot wait.
readChunk :: BodyReader -> IO ByteString
readChunk r = readChunkUpTo r chunkSize

-- | 'readChunk' with at most @n@ bytes (at least 1).
readChunkUpTo :: BodyReader -> Int -> IO ByteString
readChunkUpTo r n0 = do
  let n = max 1 n0
  fp <- BI.mallocByteString n
  got <- withForeignPtr fp $ \buf -> readRaw r buf n
  pure $
    if got == 0
      then B.empty
      else
        let bs = BI.fromForeignPtr fp 0 got
         in -- A short read does not keep a large buffer alive.
            if got * 4 < n then B.copy bs else bs

-- | Reads and drops the rest of the body, at most @limit@ bytes of it
-- ('Nothing': all). True when the body's end was reached.
discardBody :: BodyReader -> Maybe Int -> IO Bool
discardBody r limit =
  allocaBytes chunkSize $ \buf ->
    let go !left
          | maybe False (<= 0) left = readIORef (readerEnded r)
          | otherwise = do
              got <- readRaw r buf (maybe chunkSize (min chunkSize) left)
              if got == 0 then pure True else go (subtract got <$> left)
     in go limit

-- Reads up to @n@ bytes into @buf@: their count, 0 at the end. Serialised
-- with other reads and with the release (an MVar holds the C reader).
readRaw :: BodyReader -> Ptr Word8 -> Int -> IO Int
readRaw r buf n = withMVar (readerPtr r) $ \p -> do
  ended <- readIORef (readerEnded r)
  if ended
    then pure 0
    else do
      when (p == nullPtr) $
        throwIO (WarpCoreError Raw.resultInvalidState "warpcore_body_read" "the body reader was released (the handler returned) or could not be taken")
      writeIORef (readerStarted r) True
      (code, got, message) <- alloca $ \lenp -> allocaBytes Raw.messageSize $ \msg -> do
        code <- Raw.c_warpcore_hs_body_read p buf (fromIntegral n) lenp msg
        if code == Raw.resultOk
          then do
            got <- peek lenp :: IO CSize
            pure (code, fromIntegral got, "")
          else (,,) code 0 <$> peekCString (msg :: Ptr CChar)
      if code /= Raw.resultOk
        then throwIO (WarpCoreError code "warpcore_body_read" message)
        else do
          when (got == 0) $ writeIORef (readerEnded r) True
          pure got

-- | Lets go of the body now: what is left is discarded by the library (up
-- to 256 KiB, past which the connection closes after the answer), and
-- later reads throw. Called before an answer by a handler that never read,
-- it refuses the body of a client waiting for @100 Continue@: the client is
-- never told to send it and the connection closes after the answer. (A
-- reader still held when the answer begins makes the library send the
-- @100 Continue@ first, so that a handler may answer, or start a stream,
-- and then read.) Harmless to repeat.
releaseBody :: BodyReader -> IO ()
releaseBody r = mask_ $ modifyMVar_ (readerPtr r) $ \p -> do
  when (p /= nullPtr) (Raw.c_warpcore_body_free p)
  pure nullPtr

-- | Whether a read was asked for (then a @100 Continue@ owed was sent).
bodyAsked :: BodyReader -> IO Bool
bodyAsked = readIORef . readerStarted

-- | What the binding does once the handler has returned (and its answer is
-- finished): reads and drops what the handler left of the body, as @flush@
-- says, then releases the reader, and the library discards up to
-- 'engineBodyFlush' more before it closes the connection instead of
-- reusing it. @flush@ is Warp's @setMaximumBodyFlush@: 'Nothing' reads the
-- whole rest; @Just n@ reads @n - 'engineBodyFlush'@ bytes (nothing when @n@
-- is at most that), so that a connection is reused when about @max n
-- 'engineBodyFlush'@ bytes or fewer were left unread. Nothing is read when
-- the handler never asked for the body and the client waits for
-- @100 Continue@ (@expects100@): the client was told to send it only if the
-- answer began while the reader was held (see 'releaseBody'). Errors are
-- ignored.
finishBody :: Maybe Int -> Bool -> BodyReader -> IO ()
finishBody flush expects100 r = do
  released <- (== nullPtr) <$> readMVar (readerPtr r)
  started <- readIORef (readerStarted r)
  ended <- readIORef (readerEnded r)
  when (not released && not ended && (started || not expects100)) $ do
    let own = fmap (\n -> n - engineBodyFlush) flush
    when (maybe True (> 0) own) $
      void' (try (discardBody r own) :: IO (Either SomeException Bool))
  releaseBody r
  where
    void' act = act >> pure ()
