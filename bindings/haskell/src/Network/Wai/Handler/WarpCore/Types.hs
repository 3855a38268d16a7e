{-# LANGUAGE OverloadedStrings #-}
-- | The types Warp 3.3's "Network.Wai.Handler.Warp" exports besides
-- 'Settings', with the same constructors and fields, so that a program
-- that names them builds unchanged against "Network.Wai.Handler.WarpCore".
module Network.Wai.Handler.WarpCore.Types
  ( InvalidRequest (..)
  , FileInfo (..)
  , HTTP2Data (..)
  , PushPromise (..)
  , defaultHTTP2Data
  , defaultPushPromise
  , warpVersion
  ) where

import Control.Exception (Exception)
import Data.ByteString (ByteString)
import Network.HTTP.Date (HTTPDate)
import Network.HTTP.Types (ResponseHeaders)
import Network.HTTP2.Frame (Weight)
import Network.HTTP2.Server (TrailersMaker, defaultTrailersMaker)

-- | Why a request could not be read, as Warp names it. The engine answers
-- malformed requests itself (400, 413, 414, 431) without the application;
-- what reaches the application is 'ConnectionClosedByPeer', thrown by
-- @getRequestBodyChunk@ when the client left before its body ended.
data InvalidRequest
  = NotEnoughLines ![String]
  | BadFirstLine !String
  | NonHttp
  | IncompleteHeaders
  | ConnectionClosedByPeer
  | OverLargeHeader
  | BadProxyHeader !String
  deriving (Eq)

-- Warp's texts, so that logs read the same.
instance Show InvalidRequest where
  show (NotEnoughLines xs) = "Warp: Incomplete request headers, received: " ++ show xs
  show (BadFirstLine s) = "Warp: Invalid first line of request: " ++ show s
  show NonHttp = "Warp: Request line specified a non-HTTP request"
  show IncompleteHeaders = "Warp: Request headers did not finish transmission"
  show ConnectionClosedByPeer = "Warp: Client closed connection prematurely"
  show OverLargeHeader = "Warp: Request headers too large, possible memory attack detected. Closing connection."
  show (BadProxyHeader s) = "Warp: Invalid PROXY protocol header: " ++ show s

instance Exception InvalidRequest

-- | What 'Network.Wai.Handler.WarpCore.getFileInfo' tells of a file.
data FileInfo = FileInfo
  { fileInfoName :: !FilePath
  , fileInfoSize :: !Integer
  , fileInfoTime :: !HTTPDate
  -- ^ modification time
  , fileInfoDate :: !ByteString
  -- ^ modification time, formatted for @Last-Modified@
  }
  deriving (Eq, Show)

-- | HTTP/2 data of a request (server push, trailers), as Warp's. The engine
-- speaks HTTP/1.1 only: requests never carry it, as Warp's HTTP/1.1 ones
-- never do.
data HTTP2Data = HTTP2Data
  { http2dataPushPromise :: ![PushPromise]
  , http2dataTrailers :: !TrailersMaker
  }

-- | An HTTP/2 server push, as Warp's.
data PushPromise = PushPromise
  { promisedPath :: !ByteString
  , promisedFile :: !FilePath
  , promisedResponseHeaders :: !ResponseHeaders
  , promisedWeight :: !Weight
  }
  deriving (Eq, Ord, Show)

-- | No push promises, the default trailers.
defaultHTTP2Data :: HTTP2Data
defaultHTTP2Data = HTTP2Data [] defaultTrailersMaker

-- | An empty push promise of weight 16, as Warp's.
defaultPushPromise :: PushPromise
defaultPushPromise = PushPromise "" "" [] 16

-- | The version of Warp whose API this handler provides.
warpVersion :: String
warpVersion = "3.3.21"
