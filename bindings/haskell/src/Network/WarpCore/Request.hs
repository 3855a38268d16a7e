{-# LANGUAGE BangPatterns #-}
-- | A request as Haskell values, copied out of the library's borrowed view.
module Network.WarpCore.Request
  ( Request (..)
  , TLSInfo (..)
  , requestHeader
  , readView
  , readItem
  ) where

import Control.Monad (forM)
import Data.ByteString (ByteString)
import qualified Data.ByteString as B
import qualified Data.ByteString.Internal as BI
import qualified Data.ByteString.Unsafe as BU
import Data.Char (toLower)
import qualified Data.ByteString.Char8 as B8
import Data.IORef (modifyIORef', newIORef, readIORef)
import Data.Word (Word16)
import Foreign.Marshal.Utils (copyBytes)
import Foreign.Ptr (Ptr, castPtr, minusPtr, plusPtr)
import Foreign.Storable (peekElemOff, peek)

import Network.WarpCore.Body (BodyReader, newBodyReader)
import qualified Network.WarpCore.Raw as Raw

-- | One request. Every field is an ordinary Haskell value, valid for as long
-- as it is referenced (the binding copied it out of the library's buffers).
data Request = Request
  { requestMethod :: !ByteString
  -- ^ @GET@, @POST@, …
  , requestTarget :: !ByteString
  -- ^ The request target as sent (@/a%20b?x=1@).
  , requestPath :: !ByteString
  -- ^ The path, percent-decoded (@/a b@).
  , requestQuery :: !ByteString
  -- ^ The query without @?@, not decoded.
  , requestHeaders :: ![(ByteString, ByteString)]
  -- ^ Header fields in the order received, names as sent.
  , requestBody :: !ByteString
  -- ^ The whole body, chunked coding removed; empty when it streams.
  , requestBodyReader :: !(Maybe BodyReader)
  -- ^ When the body streams (it is larger than the whole-body maximum,
  -- 'Network.WarpCore.configWholeBodyMax'): its reader
  -- ('Network.WarpCore.readChunk'), valid until the handler returns.
  , requestPeerIp :: !ByteString
  -- ^ The client's address as text (@127.0.0.1@, @::1@).
  , requestPeerPort :: !Int
  , requestVersion :: !(Int, Int)
  -- ^ (major, minor): (1, 0) or (1, 1).
  , requestWorker :: !Int
  -- ^ The index of the worker that read it.
  , requestTlsVersion :: !Int
  -- ^ The connection's TLS version (@0x0303@: TLS 1.2, @0x0304@: TLS 1.3),
  -- 0 on a plain connection.
  , requestTls :: !(Maybe TLSInfo)
  -- ^ What the connection's TLS negotiated; 'Nothing' on a plain connection.
  }
  deriving (Eq, Show)

-- | What a TLS connection negotiated, as the library reports it (the same
-- for every request of the connection). Named like warp's @Transport@'s
-- @TLS@ fields where it has them.
data TLSInfo = TLSInfo
  { tlsMajorVersion :: !Int
  -- ^ 3, as TLS's wire version (3, 3) is TLS 1.2 and (3, 4) TLS 1.3.
  , tlsMinorVersion :: !Int
  -- ^ 3 (TLS 1.2) or 4 (TLS 1.3).
  , tlsCipherID :: !Word16
  -- ^ The cipher suite's IANA number (@0x1301@ is TLS_AES_128_GCM_SHA256;
  -- warp's @tlsChiperID@).
  , tlsNegotiatedProtocol :: !(Maybe ByteString)
  -- ^ The protocol agreed by ALPN (@http/1.1@); 'Nothing' when the client
  -- offered none.
  , tlsServerName :: !(Maybe ByteString)
  -- ^ The host name the client asked for (SNI), as it sent it; 'Nothing'
  -- when it named none.
  , tlsResumed :: !Bool
  -- ^ The session was resumed (a ticket or session ID), not made by a full
  -- handshake.
  , tlsClientCertificates :: ![ByteString]
  -- ^ The client's certificate chain (DER), its own certificate first,
  -- verified against the listener's CA certificates; empty when it
  -- presented none.
  }
  deriving (Eq, Show)

-- | The TLS facts of a view, their bytes taken by @bytes@ (a copy, or a
-- slice of the item's copy).
tlsInfo :: (Raw.Str -> IO ByteString) -> Raw.TlsView -> IO TLSInfo
tlsInfo bytes t = do
  alpn <- bytes (Raw.tlsViewAlpn t)
  sni <- bytes (Raw.tlsViewSni t)
  certs <- mapM bytes (Raw.tlsViewPeerCerts t)
  pure
    TLSInfo
      { tlsMajorVersion = fromIntegral (Raw.tlsViewVersion t `div` 256)
      , tlsMinorVersion = fromIntegral (Raw.tlsViewVersion t `mod` 256)
      , tlsCipherID = Raw.tlsViewCipher t
      , tlsNegotiatedProtocol = nonEmpty alpn
      , tlsServerName = nonEmpty sni
      , tlsResumed = Raw.tlsViewResumed t
      , tlsClientCertificates = certs
      }
  where
    nonEmpty b = if B.null b then Nothing else Just b

-- A copy of the borrowed bytes.
copyStr :: Raw.Str -> IO ByteString
copyStr (Raw.Str p l)
  | l == 0 = pure B.empty
  | otherwise = BI.create (fromIntegral l) $ \dst -> copyBytes dst p (fromIntegral l)

-- | The first header field of that name (compared case-insensitively; give it in lower case).
requestHeader :: ByteString -> Request -> Maybe ByteString
requestHeader name req = go (requestHeaders req)
  where
    go [] = Nothing
    go ((n, v) : rest)
      | B.length n == B.length name && B8.map toLower n == name = Just v
      | otherwise = go rest

-- | Copies the borrowed view (valid only during the handler call) into a
-- 'Request': all its bytes into one new buffer, fields as slices of it.
-- A body that streams is not taken here ('requestBodyReader' is Nothing):
-- the caller takes it with the response handle
-- ('Network.WarpCore.Body.takeBodyReader').
readView :: Ptr Raw.RequestView -> IO Request
readView p = do
  v <- peek p
  let n = fromIntegral (Raw.viewHeaderCount v)
  headers <- forM [0 .. n - 1] (peekElemOff (Raw.viewHeaders v))
  let strs =
        Raw.viewMethod v : Raw.viewTarget v : Raw.viewPath v : Raw.viewQuery v
          : Raw.viewBody v : Raw.viewPeerIp v
          : concatMap (\h -> [Raw.headerName h, Raw.headerValue h]) headers
      total = sum (map (fromIntegral . Raw.strLen) strs)
  offsets <- newIORef []
  whole <- BI.create total $ \dst -> do
    let go !_ [] = pure ()
        go !at (Raw.Str src len : rest) = do
          let l = fromIntegral len
          copyBytes (dst `plusPtr` at) src l
          modifyIORef' offsets ((at, l) :)
          go (at + l) rest
    go 0 strs
  spans <- reverse <$> readIORef offsets
  tls <- Raw.peekTlsView p
  -- Copied apart from the rest: only TLS requests pay for it.
  info <- mapM (tlsInfo copyStr) tls
  let slice (at, l) = BU.unsafeTake l (BU.unsafeDrop at whole)
  pure ((build v (map slice spans)) {requestTlsVersion = maybe 0 (fromIntegral . Raw.tlsViewVersion) tls, requestTls = info})

-- | Reads a queued item (see @cbits/warpcore_hs.h@) and frees it. Its bytes
-- are contiguous: they are copied into one buffer on the GHC heap and the
-- item is freed at once, whatever the body's size. (A large body used to
-- stay in the malloc'd item behind a C finalizer: memory the GC does not
-- count, so hundreds of large POSTs held their bodies until a major GC.)
-- Fields are slices of that buffer, made without intermediate lists (this
-- runs once per request on the default path). A body that streams comes
-- with the reader the C handler took for it.
readItem :: Ptr Raw.Item -> IO (Request, Ptr Raw.Response)
readItem item = do
  response <- Raw.itemResponse item
  base <- Raw.itemData item
  len <- fromIntegral <$> Raw.itemDataLen item
  v <- peek (Raw.itemRequest item)
  whole <- BI.create len $ \dst -> copyBytes dst base len
  let slice (Raw.Str ptr l)
        | l == 0 = B.empty
        | otherwise = BU.unsafeTake (fromIntegral l) (BU.unsafeDrop (castPtr ptr `minusPtr` base) whole)
      n = fromIntegral (Raw.viewHeaderCount v) :: Int
      hp = Raw.viewHeaders v
      -- The header array lives in the item: read it before the item is freed.
      headers !i
        | i >= n = pure []
        | otherwise = do
            Raw.Header name value <- peekElemOff hp i
            let !pair = (slice name, slice value)
            rest <- headers (i + 1)
            pure (pair : rest)
  hs <- headers 0
  bodyPtr <- Raw.itemBody item
  -- The item holds the TLS strings and the client's chain too: read the
  -- certificate array before the item is freed.
  tls <- Raw.peekTlsView (Raw.itemRequest item)
  reader <-
    if Raw.viewBodyFollows v
      then Just <$> newBodyReader bodyPtr
      else pure Nothing
  info <- mapM (tlsInfo (pure . slice)) tls
  Raw.c_warpcore_hs_item_free item
  let !req =
        Request
          { requestMethod = slice (Raw.viewMethod v)
          , requestTarget = slice (Raw.viewTarget v)
          , requestPath = slice (Raw.viewPath v)
          , requestQuery = slice (Raw.viewQuery v)
          , requestHeaders = hs
          , requestBody = slice (Raw.viewBody v)
          , requestBodyReader = reader
          , requestPeerIp = slice (Raw.viewPeerIp v)
          , requestPeerPort = fromIntegral (Raw.viewPeerPort v)
          , requestVersion = (fromIntegral (Raw.viewVersionMajor v), fromIntegral (Raw.viewVersionMinor v))
          , requestWorker = fromIntegral (Raw.viewWorkerIndex v)
          , requestTlsVersion = maybe 0 (fromIntegral . Raw.tlsViewVersion) tls
          , requestTls = info
          }
  pure (req, response)

build :: Raw.RequestView -> [ByteString] -> Request
build v (method : target : path : query : body : ip : hs) =
  Request
    { requestMethod = method
    , requestTarget = target
    , requestPath = path
    , requestQuery = query
    , requestHeaders = pairs hs
    , requestBody = body
    , requestBodyReader = Nothing
    , requestPeerIp = ip
    , requestPeerPort = fromIntegral (Raw.viewPeerPort v)
    , requestVersion = (fromIntegral (Raw.viewVersionMajor v), fromIntegral (Raw.viewVersionMinor v))
    , requestWorker = fromIntegral (Raw.viewWorkerIndex v)
    , requestTlsVersion = 0
    , requestTls = Nothing
    }
  where
    pairs (a : b : rest) = (a, b) : pairs rest
    pairs _ = []
build _ _ = error "Network.WarpCore.Request.build: too few fields"
