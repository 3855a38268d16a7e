{-# LANGUAGE OverloadedStrings #-}
-- | 'ResponseFile' the way Warp answers it: a given 'FilePart' is sent as is
-- (with @Content-Range@ when partial); without one, a @200@ answer honours
-- @If-Modified-Since@, @If-Unmodified-Since@, @If-Range@ and a single @Range@.
--
-- A whole file goes through libwarpcore's own file response
-- (@warpcore_respond_file@, sendfile); this module answers a 'FilePart', and a
-- file the library refused (missing, unreadable: a 404 here): the bytes are
-- read here and sent as a buffer (small parts) or as a stream with backpressure.
module Network.Wai.Handler.WarpCore.File
  ( sendFile
  , filePlan
  , FilePlan (..)
  ) where

import Control.Exception (IOException, bracket, try)
import Control.Monad (unless, when)
import Data.ByteString (ByteString)
import qualified Data.ByteString as B
import qualified Data.ByteString.Char8 as B8
import qualified Data.CaseInsensitive as CI
import Data.Int (Int64)
import Network.HTTP.Date (HTTPDate, epochTimeToHTTPDate, formatHTTPDate, parseHTTPDate)
import qualified Network.HTTP.Types as H
import qualified Network.HTTP.Types.Header as H
import Network.Wai (FilePart (..))
import qualified Network.Wai as Wai
import System.IO (Handle, IOMode (ReadMode), SeekMode (AbsoluteSeek), hClose, hSeek, openBinaryFile)
import System.Posix.Files (fileSize, getFileStatus, isRegularFile, modificationTime)

import Network.WarpCore.Response

-- | What to send for a file: status, extra header fields, and the byte range
-- (offset, count); no range means no body.
data FilePlan = FilePlan !H.Status !H.ResponseHeaders !(Maybe (Integer, Integer))
  deriving (Eq, Show)

-- | Decides the answer for a file of @size@ bytes last modified at @mtime@.
filePlan :: Wai.Request -> H.Status -> H.ResponseHeaders -> Maybe FilePart -> Integer -> HTTPDate -> FilePlan
filePlan _ st hs (Just part) _ _ =
  FilePlan st (contentHeaders (filePartOffset part) (filePartByteCount part) (filePartFileSize part) hs) (Just (filePartOffset part, filePartByteCount part))
filePlan req st hs Nothing size mtime
  | st /= H.status200 = FilePlan st (lengthHeaders size hs) (Just (0, size))
  | Just since <- date H.hIfModifiedSince, mtime <= since = FilePlan H.status304 lastModified Nothing
  | Just since <- date H.hIfUnmodifiedSince, mtime > since = FilePlan H.status412 lastModified Nothing
  | otherwise = case ranged of
      Nothing -> FilePlan H.status200 (lengthHeaders size lastModified) (Just (0, size))
      Just (Right (beg, end)) ->
        let len = end - beg + 1
         in FilePlan H.status206 (contentHeaders beg len size lastModified) (Just (beg, len))
      Just (Left ()) -> FilePlan H.status416 ((H.hContentRange, B8.pack ("bytes */" ++ show size)) : lastModified) (Just (0, 0))
  where
    headers = Wai.requestHeaders req
    date name = lookup name headers >>= parseHTTPDate
    lastModified
      | any ((== H.hLastModified) . fst) hs = hs
      | otherwise = (H.hLastModified, formatHTTPDate mtime) : hs
    rangeApplies = case lookup H.hIfRange headers of
      Nothing -> True
      Just v -> parseHTTPDate v == Just mtime
    ranged
      | not rangeApplies = Nothing
      | otherwise = do
          spec <- lookup H.hRange headers
          ranges <- H.parseByteRanges spec
          case ranges of
            [r] -> Just (resolve r)
            _ -> Nothing
    resolve (H.ByteRangeFrom beg)
      | beg < size = Right (beg, size - 1)
    resolve (H.ByteRangeFromTo beg end)
      | beg <= end, beg < size = Right (beg, min end (size - 1))
    resolve (H.ByteRangeSuffix n)
      | n > 0, size > 0 = Right (max 0 (size - n), size - 1)
    resolve _ = Left ()

lengthHeaders :: Integer -> H.ResponseHeaders -> H.ResponseHeaders
lengthHeaders _ hs = (H.hAcceptRanges, "bytes") : stripLength hs

contentHeaders :: Integer -> Integer -> Integer -> H.ResponseHeaders -> H.ResponseHeaders
contentHeaders off len size hs
  | len == size && off == 0 = (H.hAcceptRanges, "bytes") : stripLength hs
  | otherwise =
      (H.hContentRange, B8.pack ("bytes " ++ show off ++ "-" ++ show (off + len - 1) ++ "/" ++ show size))
        : (H.hAcceptRanges, "bytes")
        : stripLength hs

stripLength :: H.ResponseHeaders -> H.ResponseHeaders
stripLength = filter ((/= H.hContentLength) . fst)

-- | Answers a 'ResponseFile'. Returns the status sent and the body length.
sendFile :: Wai.Request -> Responder -> H.Status -> H.ResponseHeaders -> FilePath -> Maybe FilePart -> IO (H.Status, Maybe Integer)
sendFile req res st hs path part = do
  info <- try (getFileStatus path)
  case info of
    Right fs | isRegularFile fs -> do
      let size = fromIntegral (fileSize fs)
          mtime = epochTimeToHTTPDate (modificationTime fs)
          FilePlan st' hs' range = filePlan req st hs part size mtime
          hdrs = [(CI.original k, v) | (k, v) <- hs']
      case range of
        Nothing -> respond res (H.statusCode st') hdrs B.empty >> pure (st', Nothing)
        Just (off, len) -> do
          sent <- try (sendRange (Wai.requestMethod req == H.methodHead) res (H.statusCode st') hdrs path off len)
          case sent of
            Right () -> pure (st', Just len)
            Left e -> notFound e
    Right _ -> notFound (userError "not a regular file")
    Left e -> notFound e
  where
    notFound :: IOException -> IO (H.Status, Maybe Integer)
    notFound _ = do
      st0 <- responderState res
      if st0 == Fresh
        then do
          respond res 404 [("Content-Type", "text/plain; charset=utf-8")] "File not found"
          pure (H.status404, Just 14)
        else ioError (userError ("warpcore: reading " ++ path ++ " failed"))

-- Sends `len` bytes from `off`: one buffer when small, else a stream of
-- chunks (each write waits while the client is behind).
sendRange :: Bool -> Responder -> Int -> [(ByteString, ByteString)] -> FilePath -> Integer -> Integer -> IO ()
sendRange isHead res status hdrs path off len
  | isHead = do
      startStream res status hdrs (Just (fromIntegral len :: Int64))
      endStream res
  | len <= fromIntegral chunkSize =
      withFile' $ \h -> do
        bytes <- B.hGet h (fromIntegral len)
        when (B.length bytes /= fromIntegral len) $ ioError (userError "file shrank")
        respond res status hdrs bytes
  | otherwise =
      withFile' $ \h -> do
        startStream res status hdrs (Just (fromIntegral len))
        let loop remaining = unless (remaining <= 0) $ do
              chunk <- B.hGet h (fromIntegral (min remaining (fromIntegral chunkSize)))
              when (B.null chunk) $ ioError (userError "file shrank")
              writeStream res chunk
              loop (remaining - fromIntegral (B.length chunk))
        loop len
        endStream res
  where
    chunkSize = 262144 :: Int
    withFile' :: (Handle -> IO a) -> IO a
    withFile' act = bracket (openBinaryFile path ReadMode) hClose $ \h -> do
      when (off > 0) $ hSeek h AbsoluteSeek off
      act h
