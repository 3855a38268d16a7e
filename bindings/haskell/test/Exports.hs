{-# LANGUAGE RankNTypes #-}
{-# OPTIONS_GHC -Wno-missing-signatures -Wno-unused-top-binds #-}
-- | Every export of Warp 3.3's "Network.Wai.Handler.Warp" (taken from the
-- installed package's interface, @ghc --show-iface@ / @:browse!@ of
-- libghc-warp-dev 3.3.21), imported from "Network.Wai.Handler.WarpCore" with
-- Warp's type. The test suite does not build when one is missing or has
-- another type; ExportsSpec checks that this list still covers every export
-- of the installed Warp.
module Exports (warpNames) where

import Control.Exception (Exception, SomeException)
import Data.ByteString (ByteString)
import Data.X509 (CertificateChain)
import Network.HTTP.Date (HTTPDate)
import Network.HTTP.Types (ResponseHeaders, Status)
import Network.HTTP2.Frame (Weight)
import Network.HTTP2.Server (TrailersMaker)
import Network.Socket (SockAddr, Socket)
import Network.Wai (Application, Request, Response)
import System.TimeManager (Manager)

import Network.Wai.Handler.WarpCore

-- The exported types, by name.
type T_Settings = Settings
type T_Port = Port
type T_HostPreference = HostPreference
type T_InvalidRequest = InvalidRequest
type T_FileInfo = FileInfo
type T_HTTP2Data = HTTP2Data
type T_PushPromise = PushPromise

-- InvalidRequest is an exception, as Warp's.
invalidRequestIsAnException :: Exception e => e -> ()
invalidRequestIsAnException _ = ()

x_InvalidRequest_Exception :: ()
x_InvalidRequest_Exception = invalidRequestIsAnException ConnectionClosedByPeer

x_clientCertificate :: Request -> Maybe CertificateChain
x_clientCertificate = clientCertificate

x_getFileInfo :: Request -> FilePath -> IO FileInfo
x_getFileInfo = getFileInfo

x_getGracefulCloseTimeout1 :: Settings -> Int
x_getGracefulCloseTimeout1 = getGracefulCloseTimeout1

x_getGracefulCloseTimeout2 :: Settings -> Int
x_getGracefulCloseTimeout2 = getGracefulCloseTimeout2

x_getGracefulShutdownTimeout :: Settings -> Maybe Int
x_getGracefulShutdownTimeout = getGracefulShutdownTimeout

x_getHost :: Settings -> HostPreference
x_getHost = getHost

x_getOnClose :: Settings -> SockAddr -> IO ()
x_getOnClose = getOnClose

x_getOnException :: Settings -> Maybe Request -> SomeException -> IO ()
x_getOnException = getOnException

x_getOnOpen :: Settings -> SockAddr -> IO Bool
x_getOnOpen = getOnOpen

x_getPort :: Settings -> Port
x_getPort = getPort

x_pauseTimeout :: Request -> IO ()
x_pauseTimeout = pauseTimeout

x_setAltSvc :: ByteString -> Settings -> Settings
x_setAltSvc = setAltSvc

x_setBeforeMainLoop :: IO () -> Settings -> Settings
x_setBeforeMainLoop = setBeforeMainLoop

x_setFdCacheDuration :: Int -> Settings -> Settings
x_setFdCacheDuration = setFdCacheDuration

x_setFileInfoCacheDuration :: Int -> Settings -> Settings
x_setFileInfoCacheDuration = setFileInfoCacheDuration

x_setFork :: (((forall a. IO a -> IO a) -> IO ()) -> IO ()) -> Settings -> Settings
x_setFork = setFork

x_setGracefulCloseTimeout1 :: Int -> Settings -> Settings
x_setGracefulCloseTimeout1 = setGracefulCloseTimeout1

x_setGracefulCloseTimeout2 :: Int -> Settings -> Settings
x_setGracefulCloseTimeout2 = setGracefulCloseTimeout2

x_setGracefulShutdownTimeout :: Maybe Int -> Settings -> Settings
x_setGracefulShutdownTimeout = setGracefulShutdownTimeout

x_setHTTP2Disabled :: Settings -> Settings
x_setHTTP2Disabled = setHTTP2Disabled

x_setHost :: HostPreference -> Settings -> Settings
x_setHost = setHost

x_setInstallShutdownHandler :: (IO () -> IO ()) -> Settings -> Settings
x_setInstallShutdownHandler = setInstallShutdownHandler

x_setLogger :: (Request -> Status -> Maybe Integer -> IO ()) -> Settings -> Settings
x_setLogger = setLogger

x_setManager :: Manager -> Settings -> Settings
x_setManager = setManager

x_setMaxTotalHeaderLength :: Int -> Settings -> Settings
x_setMaxTotalHeaderLength = setMaxTotalHeaderLength

x_setMaximumBodyFlush :: Maybe Int -> Settings -> Settings
x_setMaximumBodyFlush = setMaximumBodyFlush

x_setNoParsePath :: Bool -> Settings -> Settings
x_setNoParsePath = setNoParsePath

x_setOnClose :: (SockAddr -> IO ()) -> Settings -> Settings
x_setOnClose = setOnClose

x_setOnException :: (Maybe Request -> SomeException -> IO ()) -> Settings -> Settings
x_setOnException = setOnException

x_setOnExceptionResponse :: (SomeException -> Response) -> Settings -> Settings
x_setOnExceptionResponse = setOnExceptionResponse

x_setOnOpen :: (SockAddr -> IO Bool) -> Settings -> Settings
x_setOnOpen = setOnOpen

x_setPort :: Port -> Settings -> Settings
x_setPort = setPort

x_setProxyProtocolNone :: Settings -> Settings
x_setProxyProtocolNone = setProxyProtocolNone

x_setProxyProtocolOptional :: Settings -> Settings
x_setProxyProtocolOptional = setProxyProtocolOptional

x_setProxyProtocolRequired :: Settings -> Settings
x_setProxyProtocolRequired = setProxyProtocolRequired

x_setServerName :: ByteString -> Settings -> Settings
x_setServerName = setServerName

x_setServerPushLogger :: (Request -> ByteString -> Integer -> IO ()) -> Settings -> Settings
x_setServerPushLogger = setServerPushLogger

x_setSlowlorisSize :: Int -> Settings -> Settings
x_setSlowlorisSize = setSlowlorisSize

x_setTimeout :: Int -> Settings -> Settings
x_setTimeout = setTimeout

x_BadFirstLine :: String -> InvalidRequest
x_BadFirstLine = BadFirstLine

x_BadProxyHeader :: String -> InvalidRequest
x_BadProxyHeader = BadProxyHeader

x_ConnectionClosedByPeer :: InvalidRequest
x_ConnectionClosedByPeer = ConnectionClosedByPeer

x_FileInfo :: FilePath -> Integer -> HTTPDate -> ByteString -> FileInfo
x_FileInfo = FileInfo

x_IncompleteHeaders :: InvalidRequest
x_IncompleteHeaders = IncompleteHeaders

x_NonHttp :: InvalidRequest
x_NonHttp = NonHttp

x_NotEnoughLines :: [String] -> InvalidRequest
x_NotEnoughLines = NotEnoughLines

x_OverLargeHeader :: InvalidRequest
x_OverLargeHeader = OverLargeHeader

x_defaultHTTP2Data :: HTTP2Data
x_defaultHTTP2Data = defaultHTTP2Data

x_defaultOnException :: Maybe Request -> SomeException -> IO ()
x_defaultOnException = defaultOnException

x_defaultOnExceptionResponse :: SomeException -> Response
x_defaultOnExceptionResponse = defaultOnExceptionResponse

x_defaultPushPromise :: PushPromise
x_defaultPushPromise = defaultPushPromise

x_defaultSettings :: Settings
x_defaultSettings = defaultSettings

x_defaultShouldDisplayException :: SomeException -> Bool
x_defaultShouldDisplayException = defaultShouldDisplayException

x_exceptionResponseForDebug :: SomeException -> Response
x_exceptionResponseForDebug = exceptionResponseForDebug

x_fileInfoDate :: FileInfo -> ByteString
x_fileInfoDate = fileInfoDate

x_fileInfoName :: FileInfo -> FilePath
x_fileInfoName = fileInfoName

x_fileInfoSize :: FileInfo -> Integer
x_fileInfoSize = fileInfoSize

x_fileInfoTime :: FileInfo -> HTTPDate
x_fileInfoTime = fileInfoTime

x_getHTTP2Data :: Request -> IO (Maybe HTTP2Data)
x_getHTTP2Data = getHTTP2Data

x_http2dataPushPromise :: HTTP2Data -> [PushPromise]
x_http2dataPushPromise = http2dataPushPromise

x_http2dataTrailers :: HTTP2Data -> TrailersMaker
x_http2dataTrailers = http2dataTrailers

x_modifyHTTP2Data :: Request -> (Maybe HTTP2Data -> Maybe HTTP2Data) -> IO ()
x_modifyHTTP2Data = modifyHTTP2Data

x_openFreePort :: IO (Port, Socket)
x_openFreePort = openFreePort

x_promisedFile :: PushPromise -> FilePath
x_promisedFile = promisedFile

x_promisedPath :: PushPromise -> ByteString
x_promisedPath = promisedPath

x_promisedResponseHeaders :: PushPromise -> ResponseHeaders
x_promisedResponseHeaders = promisedResponseHeaders

x_promisedWeight :: PushPromise -> Weight
x_promisedWeight = promisedWeight

x_run :: Port -> Application -> IO ()
x_run = run

x_runEnv :: Port -> Application -> IO ()
x_runEnv = runEnv

x_runSettings :: Settings -> Application -> IO ()
x_runSettings = runSettings

x_runSettingsSocket :: Settings -> Socket -> Application -> IO ()
x_runSettingsSocket = runSettingsSocket

x_setHTTP2Data :: Request -> Maybe HTTP2Data -> IO ()
x_setHTTP2Data = setHTTP2Data

x_testWithApplication :: IO Application -> (Port -> IO a) -> IO a
x_testWithApplication = testWithApplication

x_testWithApplicationSettings :: Settings -> IO Application -> (Port -> IO a) -> IO a
x_testWithApplicationSettings = testWithApplicationSettings

x_warpVersion :: String
x_warpVersion = warpVersion

x_withApplication :: IO Application -> (Port -> IO a) -> IO a
x_withApplication = withApplication

x_withApplicationSettings :: Settings -> IO Application -> (Port -> IO a) -> IO a
x_withApplicationSettings = withApplicationSettings

-- | The names this module checks (values, constructors, fields and types).
warpNames :: [String]
warpNames =
  [ "clientCertificate"
  , "getFileInfo"
  , "getGracefulCloseTimeout1"
  , "getGracefulCloseTimeout2"
  , "getGracefulShutdownTimeout"
  , "getHost"
  , "getOnClose"
  , "getOnException"
  , "getOnOpen"
  , "getPort"
  , "pauseTimeout"
  , "setAltSvc"
  , "setBeforeMainLoop"
  , "setFdCacheDuration"
  , "setFileInfoCacheDuration"
  , "setFork"
  , "setGracefulCloseTimeout1"
  , "setGracefulCloseTimeout2"
  , "setGracefulShutdownTimeout"
  , "setHTTP2Disabled"
  , "setHost"
  , "setInstallShutdownHandler"
  , "setLogger"
  , "setManager"
  , "setMaxTotalHeaderLength"
  , "setMaximumBodyFlush"
  , "setNoParsePath"
  , "setOnClose"
  , "setOnException"
  , "setOnExceptionResponse"
  , "setOnOpen"
  , "setPort"
  , "setProxyProtocolNone"
  , "setProxyProtocolOptional"
  , "setProxyProtocolRequired"
  , "setServerName"
  , "setServerPushLogger"
  , "setSlowlorisSize"
  , "setTimeout"
  , "BadFirstLine"
  , "BadProxyHeader"
  , "ConnectionClosedByPeer"
  , "FileInfo"
  , "IncompleteHeaders"
  , "NonHttp"
  , "NotEnoughLines"
  , "OverLargeHeader"
  , "defaultHTTP2Data"
  , "defaultOnException"
  , "defaultOnExceptionResponse"
  , "defaultPushPromise"
  , "defaultSettings"
  , "defaultShouldDisplayException"
  , "exceptionResponseForDebug"
  , "fileInfoDate"
  , "fileInfoName"
  , "fileInfoSize"
  , "fileInfoTime"
  , "getHTTP2Data"
  , "http2dataPushPromise"
  , "http2dataTrailers"
  , "modifyHTTP2Data"
  , "openFreePort"
  , "promisedFile"
  , "promisedPath"
  , "promisedResponseHeaders"
  , "promisedWeight"
  , "run"
  , "runEnv"
  , "runSettings"
  , "runSettingsSocket"
  , "setHTTP2Data"
  , "testWithApplication"
  , "testWithApplicationSettings"
  , "warpVersion"
  , "withApplication"
  , "withApplicationSettings"
  , "Settings"
  , "Port"
  , "HostPreference"
  , "InvalidRequest"
  , "FileInfo"
  , "HTTP2Data"
  , "PushPromise"
  ]
