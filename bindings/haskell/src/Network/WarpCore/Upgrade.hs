{-# LANGUAGE MultiWayIf #-}
{-# LANGUAGE ScopedTypeVariables #-}
-- | Connections that switch protocols: a request that asked to (HTTP/1.1,
-- @Connection: upgrade@ and an @Upgrade@ field) may be answered by handing
-- its connection over, either with a @101 Switching Protocols@ the library
-- sends ('upgrade') or with nothing sent at all ('takeOver', what Warp's
-- @responseRaw@ does: the application writes its own @101@). The
-- connection's bytes then flow both ways through an 'Upgraded' handle.
--
-- Reads and writes are @safe@ foreign calls that wait (a read for bytes, a
-- write while the peer does not read): the calling green thread blocks in C
-- while the capability runs other threads, and each one blocked holds an OS
-- thread of the runtime. They never wait on the library's worker threads
-- (an 'Network.WarpCore.InCallback' handler): there they throw
-- 'Raw.resultWouldBlock', so run the connection on a green thread of its own.
--
-- The handle is the caller's until 'freeUpgraded' (which closes the
-- connection), however the code using it ends: use 'withTakeOver' or
-- 'withUpgrade', or free it in a 'finally'. A handle never freed keeps its
-- connection until the peer leaves, the idle timeout (60 s by default,
-- 'setUpgradedIdleTimeout') or shutdown. Calls on a freed handle throw
-- 'WarpCoreError' ('Raw.resultInvalidArgument'); they never reach another
-- connection.
module Network.WarpCore.Upgrade
  ( Upgraded
  , takeOver
  , upgrade
  , withTakeOver
  , withUpgrade
  , readUpgraded
  , writeUpgraded
  , shutdownWrite
  , closeUpgraded
  , freeUpgraded
  , setUpgradedIdleTimeout
  , upgradedDraining
  , upgradedReadSize
  ) where

import Control.Exception (catch, finally, mask, throwIO)
import Data.ByteString (ByteString)
import qualified Data.ByteString as B
import qualified Data.ByteString.Internal as BI
import qualified Data.ByteString.Unsafe as BU
import Data.Word (Word64)
import Foreign.C.String (peekCString)
import Foreign.C.Types (CChar)
import Foreign.ForeignPtr (withForeignPtr)
import Foreign.Marshal.Alloc (alloca, allocaBytes)
import Foreign.Ptr (Ptr, castPtr, nullFunPtr, nullPtr, plusPtr)
import Foreign.StablePtr (castStablePtrToPtr, newStablePtr)
import Foreign.Storable (peek)
import GHC.IO.Exception (IOErrorType (ResourceVanished), IOException (..))

import Network.WarpCore.Error
import qualified Network.WarpCore.Raw as Raw
import Network.WarpCore.Response (Responder, finishWith, withHeaders, zeroCopyThreshold)

-- | A connection that switched protocols (@warpcore_upgraded@). Calls may
-- come from any thread and overlap (one thread reading while another writes).
newtype Upgraded = Upgraded (Ptr Raw.Upgraded)
  deriving (Eq, Show)

-- | Takes the connection over with nothing sent (Warp's @responseRaw@):
-- 'Just' the handle, after which the responder is finished; 'Nothing' when
-- the request did not ask to switch protocols, with the responder untouched
-- (answer it as usual). Throws 'WarpCoreError' otherwise (the responder was
-- answered already; @CLOSED@ when the client left, which finishes it).
-- Call it under 'Control.Exception.mask' and free the handle in a
-- 'finally', or use 'withTakeOver'.
takeOver :: Responder -> IO (Maybe Upgraded)
takeOver r = handOver "warpcore_response_take_over" r $ \res out msg ->
  Raw.c_warpcore_hs_response_take_over res nullFunPtr nullPtr out msg

-- | Accepts the upgrade: the library sends @101 Switching Protocols@ with
-- these fields, which must include @Upgrade@ (it adds @Date@, @Server@ and
-- @Connection: Upgrade@). 'Nothing' and 'Just' as for 'takeOver'; a missing
-- or invalid @Upgrade@ field throws 'Raw.resultInvalidHeader' with nothing
-- sent.
upgrade :: Responder -> [(ByteString, ByteString)] -> IO (Maybe Upgraded)
upgrade r hs = handOver "warpcore_response_upgrade" r $ \res out msg ->
  withHeaders hs $ \hp n ->
    Raw.c_warpcore_hs_response_upgrade res hp (fromIntegral n) nullFunPtr nullPtr out msg

handOver
  :: String -> Responder
  -> (Ptr Raw.Response -> Ptr (Ptr Raw.Upgraded) -> Ptr CChar -> IO Raw.Result)
  -> IO (Maybe Upgraded)
handOver call r act = alloca $ \out -> do
  refused <-
    (False <$ finishWith r call (\res msg -> act res out msg))
      `catch` \(e :: WarpCoreError) ->
        if errorResult e == Raw.resultInvalidState then pure True else throwIO e
  if refused then pure Nothing else Just . Upgraded <$> peek out

-- | 'takeOver', then the action with the handle, freed (the connection
-- closed) when it returns or throws; the fallback when the request did not
-- ask to switch protocols.
withTakeOver :: Responder -> IO a -> (Upgraded -> IO a) -> IO a
withTakeOver r fallback k = mask $ \restore -> do
  taken <- takeOver r
  case taken of
    Nothing -> restore fallback
    Just up -> restore (k up) `finally` freeUpgraded up

-- | 'upgrade' with the handle freed as 'withTakeOver' frees it.
withUpgrade :: Responder -> [(ByteString, ByteString)] -> IO a -> (Upgraded -> IO a) -> IO a
withUpgrade r hs fallback k = mask $ \restore -> do
  taken <- upgrade r hs
  case taken of
    Nothing -> restore fallback
    Just up -> restore (k up) `finally` freeUpgraded up

-- | The most one 'readUpgraded' returns (the library holds at most 64 KiB
-- for the reader).
upgradedReadSize :: Int
upgradedReadSize = 65536

-- | The next bytes from the peer, as many as arrived (at most
-- 'upgradedReadSize'); waits for some. Empty once the peer half-closed or
-- the connection is closed (and every byte before was read), as a socket's
-- @recv@ returns. Throws 'WarpCoreError' on a freed handle, or
-- 'Raw.resultWouldBlock' on a worker thread with nothing to read.
readUpgraded :: Upgraded -> IO ByteString
readUpgraded (Upgraded p) =
  allocaBytes Raw.messageSize $ \msg -> alloca $ \lenp -> do
    fp <- BI.mallocByteString upgradedReadSize
    code <- withForeignPtr fp $ \bp ->
      Raw.c_warpcore_hs_upgraded_read p bp (fromIntegral upgradedReadSize) lenp msg
    if
      | code == Raw.resultOk -> do
          n <- fromIntegral <$> peek lenp
          let bytes = BI.fromForeignPtr fp 0 n
          -- A short read does not keep the whole buffer alive.
          pure (if n == 0 then B.empty else if n < upgradedReadSize `div` 2 then B.copy bytes else bytes)
      | code == Raw.resultClosed -> pure B.empty
      | otherwise -> failed "warpcore_upgraded_read" code msg

-- | Sends the bytes to the peer; waits while more than the server's stream
-- high-water mark is queued. Large strings go without a copy. Throws an
-- 'IOException' (@ResourceVanished@, as a socket's broken pipe) when the
-- connection is closed or its writing side was shut, 'WarpCoreError'
-- otherwise (a freed handle).
writeUpgraded :: Upgraded -> ByteString -> IO ()
writeUpgraded (Upgraded p) bs
  | B.null bs = pure ()
  | B.length bs < zeroCopyThreshold =
      allocaBytes Raw.messageSize $ \msg -> do
        code <- BU.unsafeUseAsCStringLen bs $ \(bp, bl) ->
          Raw.c_warpcore_hs_upgraded_write p (castPtr bp) (fromIntegral bl) msg
        orVanished "warpcore_upgraded_write" code msg
  | otherwise =
      allocaBytes Raw.messageSize $ \msg -> do
        -- The library releases the StablePtr once the bytes are sent (or at
        -- once when the call fails).
        let (fp, off, len) = BI.toForeignPtr bs
        sp <- newStablePtr bs
        code <- withForeignPtr fp $ \bp ->
          Raw.c_warpcore_hs_upgraded_write_buffer p (bp `plusPtr` off) (fromIntegral len)
            Raw.p_warpcore_hs_release_stable (castStablePtrToPtr sp) msg
        orVanished "warpcore_upgraded_write_buffer" code msg

-- | Shuts the writing side once what was written has left (the peer reads
-- the end of the stream); reading goes on. Throws as 'writeUpgraded' does
-- when it is closed or shut already.
shutdownWrite :: Upgraded -> IO ()
shutdownWrite (Upgraded p) = allocaBytes Raw.messageSize $ \msg -> do
  code <- Raw.c_warpcore_hs_upgraded_shutdown_write p msg
  orVanished "warpcore_upgraded_shutdown_write" code msg

-- | Closes the connection once what was written has left; reads and writes
-- blocked on other threads return (empty, or throw). Harmless when it is
-- closed already. The handle still needs 'freeUpgraded'.
closeUpgraded :: Upgraded -> IO ()
closeUpgraded (Upgraded p) = allocaBytes Raw.messageSize $ \msg -> do
  code <- Raw.c_warpcore_hs_upgraded_close p msg
  if code == Raw.resultOk || code == Raw.resultClosed then pure () else failed "warpcore_upgraded_close" code msg

-- | Releases the handle, closing the connection (after what was written
-- leaves). Calls blocked on it return; later ones throw. Harmless to repeat.
freeUpgraded :: Upgraded -> IO ()
freeUpgraded (Upgraded p) = Raw.c_warpcore_upgraded_free p

-- | How long the connection may carry no byte either way before the library
-- closes it, in milliseconds (0: never; the default is 60 s).
setUpgradedIdleTimeout :: Upgraded -> Word64 -> IO ()
setUpgradedIdleTimeout (Upgraded p) ms = allocaBytes Raw.messageSize $ \msg -> do
  code <- Raw.c_warpcore_hs_upgraded_set_idle_timeout p ms msg
  orVanished "warpcore_upgraded_set_idle_timeout" code msg

-- | 'Nothing' while the server runs normally; once it began to shut down,
-- the milliseconds left before it cuts the connection.
upgradedDraining :: Upgraded -> IO (Maybe Word64)
upgradedDraining (Upgraded p) = alloca $ \out -> do
  -- unsafe: the message is read on the same OS thread.
  check "warpcore_upgraded_draining" (Raw.c_warpcore_upgraded_draining p out)
  left <- peek out
  pure (if left == maxBound then Nothing else Just left)

orVanished :: String -> Raw.Result -> Ptr CChar -> IO ()
orVanished call code msg
  | code == Raw.resultOk = pure ()
  | code == Raw.resultClosed = do
      message <- peekCString msg
      throwIO
        IOError
          { ioe_handle = Nothing
          , ioe_type = ResourceVanished
          , ioe_location = call
          , ioe_description = if null message then "the connection is closed" else message
          , ioe_errno = Nothing
          , ioe_filename = Nothing
          }
  | otherwise = failed call code msg

failed :: String -> Raw.Result -> Ptr CChar -> IO a
failed call code msg = do
  message <- peekCString msg
  throwIO (WarpCoreError code call message)
