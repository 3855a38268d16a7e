-- | Result codes as a Haskell exception.
module Network.WarpCore.Error
  ( WarpCoreError (..)
  , check
  , throwResult
  , resultName
  , lastErrorMessage
  ) where

import Control.Exception (Exception, throwIO)
import Foreign.C.String (peekCString)
import Foreign.Marshal.Alloc (allocaBytes)
import Foreign.Ptr (nullPtr)
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
