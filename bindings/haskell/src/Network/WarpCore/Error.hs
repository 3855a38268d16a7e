-- | Result codes as a Haskell exception.
module Network.WarpCore.Error
  ( WarpCoreError (..)
  , check
  , checkWith
  , throwResult
  , resultName
  , lastErrorMessage
  ) where

import Control.Exception (Exception, throwIO)
import Foreign.C.String (peekCString)
import Foreign.C.Types (CChar)
import Foreign.Marshal.Alloc (allocaBytes)
import Foreign.Ptr (Ptr, nullPtr)
import System.IO.Unsafe (unsafePerformIO)

import qualified Network.WarpCore.Raw as Raw

-- | A call into libwarpcore failed: the 'Raw.Result' code, its description
-- (@warpcore_result_str@), what was being done and the calling thread's
-- message (@warpcore_last_error_message@).
data WarpCoreError = WarpCoreError
  { errorResult :: !Raw.Result
  , errorCall :: !String
  , errorMessage :: !String
  }
  deriving (Eq)

instance Show WarpCoreError where
  show (WarpCoreError code call message) =
    call ++ ": " ++ resultName code ++ (if null message then "" else " (" ++ message ++ ")")

instance Exception WarpCoreError

-- | Throws a 'WarpCoreError' unless the result is 'Raw.resultOk'.
check :: String -> IO Raw.Result -> IO ()
check call action = do
  code <- action
  if code == Raw.resultOk then pure () else throwResult call code

-- | Runs a call that keeps its own error message (a @warpcore_hs_*@ import
-- of "Network.WarpCore.Raw", given a buffer) and throws a 'WarpCoreError'
-- with that message unless it returns 'Raw.resultOk'. The message comes
-- from the OS thread that made the call, in the same C call, whichever OS
-- thread this Haskell thread runs on afterwards.
checkWith :: String -> (Ptr CChar -> IO Raw.Result) -> IO ()
checkWith call action =
  allocaBytes Raw.messageSize $ \buf -> do
    code <- action buf
    if code == Raw.resultOk
      then pure ()
      else do
        message <- peekCString buf
        throwIO (WarpCoreError code call message)

-- | Throws the 'WarpCoreError' for a code, with this thread's message.
-- The message is thread-local in C: read it on the thread that made the call
-- (an unsafe import or a bound thread guarantees that; otherwise it may be empty).
throwResult :: String -> Raw.Result -> IO a
throwResult call code = do
  message <- lastErrorMessage
  throwIO (WarpCoreError code call message)

-- | The library's description of a result code.
resultName :: Raw.Result -> String
resultName code = unsafePerformIO (Raw.c_warpcore_result_str code >>= peekCString)

-- | The calling OS thread's last error message.
lastErrorMessage :: IO String
lastErrorMessage = do
  n <- Raw.c_warpcore_last_error_message nullPtr 0
  let size = fromIntegral n + 1
  allocaBytes size $ \buf -> do
    _ <- Raw.c_warpcore_last_error_message buf (fromIntegral size)
    peekCString buf
