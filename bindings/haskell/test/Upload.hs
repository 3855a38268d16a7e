{-# LANGUAGE BangPatterns #-}
{-# LANGUAGE OverloadedStrings #-}
-- | Uploads over a raw socket for the streaming-body tests: a deterministic
-- body of any size sent while the answer is read (an echo streams back as
-- the upload arrives, so neither side may wait for the other), SHA-256 of
-- what was sent and of what came back, and a response reader that decodes
-- @Content-Length@ and chunked bodies piece by piece.
module Upload
  ( Conn
  , connect
  , closeConn
  , sendBytes
  , pieces
  , sha256
  , Echo (..)
  , uploadEcho
  , shouldEchoWhole
  , readHead
  , bodyOf
  , readAtLeast
  ) where

import Control.Concurrent.Async (concurrently)
import Control.Exception (throwIO)
import Crypto.Hash (Context, Digest, SHA256, hashFinalize, hashInit, hashUpdate)
import Data.Bits ((.&.))
import qualified Data.ByteString as B
import qualified Data.ByteString.Char8 as B8
import Data.Char (toLower)
import Data.Int (Int64)
import Data.IORef
import GHC.Clock (getMonotonicTime)
import Network.Socket (Socket, close)
import qualified Network.Socket.ByteString as NSB
import Numeric (readHex)
import Test.Hspec (Expectation, shouldBe)

import Util (rawConnect)

-- | A socket with the bytes received but not consumed yet.
data Conn = Conn Socket (IORef B.ByteString)

connect :: Int -> IO Conn
connect port = Conn <$> rawConnect port <*> newIORef B.empty

closeConn :: Conn -> IO ()
closeConn (Conn s _) = close s

sendBytes :: Conn -> B.ByteString -> IO ()
sendBytes (Conn s _) = NSB.sendAll s

-- The body's bytes: a block of 1 MiB + 4093 bytes (not a multiple of any
-- chunk size) sent cyclically, so that a lost, repeated or reordered piece
-- changes the digest.
block :: B.ByteString
block = B.pack [fromIntegral ((i * 7 + i `div` 4093) .&. 255) | i <- [0 .. blockLen - 1]]

blockLen :: Int
blockLen = 1048576 + 4093

doubled :: B.ByteString
doubled = block <> block

-- | The first @total@ bytes of the deterministic body, in pieces of at most
-- @size@ bytes (slices of one buffer, nothing copied).
pieces :: Int -> Int64 -> [B.ByteString]
pieces size total = go 0
  where
    go !at
      | at >= total = []
      | otherwise =
          let n = fromIntegral (min (fromIntegral size) (total - at))
              off = fromIntegral (at `mod` fromIntegral blockLen)
           in B.take n (B.drop off doubled) : go (at + fromIntegral n)

sha256 :: [B.ByteString] -> Digest SHA256
sha256 = hashFinalize . foldl hashUpdate (hashInit :: Context SHA256)

-- | More bytes into the buffer; False at the end of the stream.
fill :: Conn -> IO Bool
fill (Conn s ref) = do
  chunk <- NSB.recv s 262144
  if B.null chunk then pure False else True <$ modifyIORef' ref (<> chunk)

-- | Up to @n@ buffered or received bytes (at least one; empty at the end).
takeUpTo :: Conn -> Int -> IO B.ByteString
takeUpTo c@(Conn _ ref) n = do
  buf <- readIORef ref
  if B.null buf
    then do
      more <- fill c
      if more then takeUpTo c n else pure B.empty
    else do
      let (a, b) = B.splitAt n buf
      writeIORef ref b
      pure a

-- | A line without its CRLF.
readLine :: Conn -> IO B.ByteString
readLine c@(Conn _ ref) = do
  buf <- readIORef ref
  case B.breakSubstring "\r\n" buf of
    (line, rest)
      | not (B.null rest) -> writeIORef ref (B.drop 2 rest) >> pure line
      | otherwise -> do
          more <- fill c
          if more then readLine c else throwIO (userError "connection closed inside a line")

-- | A response head (after any @100 Continue@): status and fields, names
-- in lower case.
readHead :: Conn -> IO (Int, [(B.ByteString, B.ByteString)])
readHead c = do
  status <- readLine c
  fields <- let go acc = readLine c >>= \l -> if B.null l then pure (reverse acc) else go (field l : acc) in go []
  let code = maybe 0 fst (B8.readInt (B.take 3 (B.drop 9 status)))
  if code == 100 then readHead c else pure (code, fields)
  where
    field l = let (n, v) = B.break (== 58) l in (B8.map toLower n, B8.dropWhile (== ' ') (B.drop 1 v))

-- | Reads the response body of a head piece by piece: the action returns
-- the next decoded bytes, empty at the body's end (Content-Length, chunked,
-- or the connection's end).
bodyOf :: Conn -> [(B.ByteString, B.ByteString)] -> IO (IO B.ByteString)
bodyOf c fields = case (lookup "transfer-encoding" fields, lookup "content-length" fields >>= B8.readInteger) of
  (Just te, _) | "chunked" `B.isInfixOf` B8.map toLower te -> do
    left <- newIORef (0 :: Int)
    done <- newIORef False
    let next = do
          finished <- readIORef done
          n <- readIORef left
          if finished
            then pure B.empty
            else
              if n > 0
                then do
                  bs <- takeUpTo c n
                  when' (B.null bs) (throwIO (userError "connection closed inside a chunk"))
                  writeIORef left (n - B.length bs)
                  pure bs
                else do
                  line <- readLine c
                  -- the CRLF after a chunk's data
                  line' <- if B.null line then readLine c else pure line
                  case readHex (B8.unpack (B8.takeWhile (/= ';') line')) of
                    [(0, "")] -> do
                      let trailers = readLine c >>= \l -> if B.null l then pure () else trailers
                      trailers
                      writeIORef done True
                      pure B.empty
                    [(size, "")] -> writeIORef left size >> next
                    _ -> throwIO (userError ("bad chunk size line: " ++ show line'))
    pure next
  (_, Just (len, "")) -> do
    left <- newIORef (fromInteger len :: Int64)
    pure $ do
      n <- readIORef left
      if n <= 0
        then pure B.empty
        else do
          bs <- takeUpTo c (fromIntegral (min n 1048576))
          when' (B.null bs) (throwIO (userError "connection closed inside the body"))
          writeIORef left (n - fromIntegral (B.length bs))
          pure bs
  _ -> pure (takeUpTo c 1048576)
  where
    when' b act = if b then act else pure ()

-- | Reads body pieces until at least @n@ bytes came: them, fewer at the end.
readAtLeast :: IO B.ByteString -> Int -> IO [B.ByteString]
readAtLeast next n
  | n <= 0 = pure []
  | otherwise = do
      bs <- next
      if B.null bs then pure [] else (bs :) <$> readAtLeast next (n - B.length bs)

-- | What an echoed upload did.
data Echo = Echo
  { echoStatus :: Int
  , echoSent :: Digest SHA256
  , echoReceived :: Digest SHA256
  , echoLength :: Int64
  , echoSeconds :: Double
  , echoSentAtFirstByte :: Int64
  -- ^ Body bytes sent when the first echoed byte came back: far less than
  -- the whole body when the echo streams (TCP backpressure bounds it), all of
  -- it when the server collected the body before answering.
  }

-- | The echo answered 200 with all @total@ bytes, the same bytes that were sent.
shouldEchoWhole :: Echo -> Int64 -> Expectation
shouldEchoWhole e total = do
  echoStatus e `shouldBe` 200
  echoLength e `shouldBe` total
  echoReceived e `shouldBe` echoSent e

-- | POSTs @total@ deterministic bytes to @path@ (with a Content-Length, or
-- chunked) from one thread while another reads the answer, hashing both.
uploadEcho :: Int -> B.ByteString -> Bool -> Int64 -> IO Echo
uploadEcho port path chunked total = do
  c <- connect port
  sentSoFar <- newIORef (0 :: Int64)
  started <- getMonotonicTime
  let framing
        | chunked = "Transfer-Encoding: chunked"
        | otherwise = "Content-Length: " <> B8.pack (show total)
  sendBytes c ("POST " <> path <> " HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n" <> framing <> "\r\n\r\n")
  let send = do
        let go !ctx [] = pure ctx
            go !ctx (p : ps) = do
              sendBytes c (if chunked then frame p else p)
              atomicModifyIORef' sentSoFar (\n -> (n + fromIntegral (B.length p), ()))
              go (hashUpdate ctx p) ps
        ctx <- go (hashInit :: Context SHA256) (pieces 65536 total)
        if chunked then sendBytes c "0\r\n\r\n" else pure ()
        pure (hashFinalize ctx)
      frame p = B8.pack (showHex' (B.length p)) <> "\r\n" <> p <> "\r\n"
      receive = do
        (status, fields) <- readHead c
        next <- bodyOf c fields
        first <- next
        atFirst <- readIORef sentSoFar
        let go !ctx !n bs
              | B.null bs = pure (hashFinalize ctx, n)
              | otherwise = next >>= go (hashUpdate ctx bs) (n + fromIntegral (B.length bs))
        (digest, n) <- go (hashInit :: Context SHA256) 0 first
        pure (status, digest, n, atFirst)
  (sent, (status, received, n, atFirst)) <- concurrently send receive
  ended <- getMonotonicTime
  closeConn c
  pure (Echo status sent received n (ended - started) atFirst)
  where
    showHex' n = let go 0 acc = if null acc then "0" else acc
                     go k acc = go (k `div` 16) ("0123456789abcdef" !! (k `mod` 16) : acc)
                  in go n ""
