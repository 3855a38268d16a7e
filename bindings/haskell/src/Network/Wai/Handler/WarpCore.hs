{-# LANGUAGE OverloadedStrings #-}
{-# LANGUAGE RankNTypes #-}
{-# LANGUAGE ScopedTypeVariables #-}
-- requestBody is the field getRequestBodyChunk reads; wai 3.2.3 has no setter.
{-# OPTIONS_GHC -Wno-deprecations #-}
-- | A WAI handler on libwarpcore, named like Warp's so that moving an
-- application is a change of import:
--
-- @
-- import Network.Wai.Handler.WarpCore (run)   -- was Network.Wai.Handler.Warp
--
-- main = run 8080 app
-- @
--
-- Link with @-threaded@. Each request runs in its own green thread; the
-- library's event loops (one per worker, 'setWorkers', by default one per
-- capability) never run Haskell code. Every 'Response' kind is answered:
-- 'responseBuilder' and 'responseLBS' in one write, 'responseFile' with its
-- 'FilePart' or with @Range@ and conditional requests, 'responseStream'
-- chunked (or with the @Content-Length@ the application gave) with
-- backpressure, and 'responseRaw' as Warp does: for a request that asked to
-- switch protocols (HTTP/1.1, @Connection: upgrade@, an @Upgrade@ field)
-- the connection is taken over with nothing sent and the raw application
-- reads and writes its bytes (so @Network.Wai.Handler.WebSockets@ runs
-- unchanged); for any other request the fallback response is sent.
-- 'getRequestBodyChunk' streams the request body chunk
-- by chunk as it arrives (at most 64 KiB each, with TCP backpressure) when
-- it is larger than 'setWholeBodyMax' (1 MiB by default); a smaller body
-- arrives whole before the application is called and is handed out as one
-- chunk. As with Warp there is no body limit unless 'setMaxBodySize' sets
-- one, and 'setMaximumBodyFlush' says what happens to a body the
-- application left unread. An exception in the application answers @500@
-- like Warp's default ('setOnExceptionResponse').
module Network.Wai.Handler.WarpCore
  ( -- * Running
    run
  , runEnv
  , runSettings
  , runSettingsSocket
  , withApplication
  , withApplicationSettings
  , testWithApplication
  , testWithApplicationSettings
  , openFreePort
    -- * Settings
  , Settings
  , defaultSettings
  , Port
  , HostPreference
    -- ** Like Warp's
  , setPort
  , setHost
  , setOnException
  , setOnExceptionResponse
  , setTimeout
  , setInstallShutdownHandler
  , setBeforeMainLoop
  , setServerName
  , setGracefulShutdownTimeout
  , setMaxTotalHeaderLength
  , setLogger
  , setHTTP2Disabled
  , setOnOpen
  , setOnClose
  , setProxyProtocolNone
  , setProxyProtocolRequired
  , setProxyProtocolOptional
  , setFork
  , setNoParsePath
  , setAltSvc
  , setFdCacheDuration
  , setFileInfoCacheDuration
  , setSlowlorisSize
  , setGracefulCloseTimeout1
  , setGracefulCloseTimeout2
  , setManager
  , setServerPushLogger
  , setMaxBuilderResponseBufferSize
  , getPort
  , getHost
  , getOnException
  , getOnOpen
  , getOnClose
  , getGracefulShutdownTimeout
  , getGracefulCloseTimeout1
  , getGracefulCloseTimeout2
  , getMaxTotalHeaderLength
    -- ** What a request carries (Warp's vault keys)
  , pauseTimeout
  , getFileInfo
  , FileInfo (..)
  , clientCertificate
    -- ** HTTP/2 (the engine speaks HTTP/1.1: never present)
  , HTTP2Data (..)
  , PushPromise (..)
  , defaultHTTP2Data
  , defaultPushPromise
  , getHTTP2Data
  , setHTTP2Data
  , modifyHTTP2Data
  , warpVersion
  , InvalidRequest (..)
    -- ** libwarpcore's own
  , setWorkers
  , setMaxBodySize
  , setWholeBodyMax
  , setMaximumBodyFlush
  , getMaximumBodyFlush
  , setStreamHighWater
  , setDispatch
  , setSchedBatch
  , setWorkerThreads
  , setOnReady
  , setStaticMount
  , setStaticDotfiles
  , setTLSConfig
  , getTLSInfo
  , WC.TLSInfo (..)
  , Dispatch (..)
  , WorkerThreads (..)
    -- * Exceptions
  , defaultOnException
  , defaultShouldDisplayException
  , defaultOnExceptionResponse
  , exceptionResponseForDebug
    -- * Internals (for tests and tools)
  , toWaiRequest
  , waiHandler
  ) where

import Control.Concurrent (forkIO, forkIOWithUnmask, getNumCapabilities, killThread, myThreadId, threadWaitWrite)
import Control.Exception
import Control.Monad (void, when)
import Data.ByteString (ByteString)
import qualified Data.ByteString as B
import qualified Data.ByteString.Builder as BB
import qualified Data.ByteString.Builder.Extra as BBE
import qualified Data.ByteString.Char8 as B8
import qualified Data.ByteString.Internal as BI
import qualified Data.ByteString.Unsafe as BU
import qualified Data.CaseInsensitive as CI
import Data.IORef
import Data.Int (Int64)
import Data.List (intercalate)
import Data.Maybe (fromMaybe)
import Data.Streaming.Network (bindPortTCP, bindRandomPortTCP)
import Data.Streaming.Network.Internal (HostPreference (..))
import Data.Word (Word32, Word64, Word8)
import Foreign.ForeignPtr (ForeignPtr, mallocForeignPtrBytes, withForeignPtr)
import Foreign.C.Error (throwErrnoIfMinus1)
import Foreign.Ptr (plusPtr)
import GHC.IO.Exception (IOErrorType (..))
import qualified Network.HTTP.Types as H
import qualified Network.HTTP.Types.Header as H
import Network.Socket (AddrInfo (..), AddrInfoFlag (..), Family (..), SockAddr (..), Socket, SocketType (..), defaultHints, getAddrInfo, hostAddressToTuple, tupleToHostAddress)
import qualified Network.Socket as NS
import Network.Wai
import Network.Wai.Internal (Response (..), ResponseReceived (..))
import System.Environment (lookupEnv)
import System.IO (hPutStrLn, stderr)
import System.IO.Error (ioeGetErrorType)
import System.IO.Unsafe (unsafePerformIO)
import System.Posix.Files (fileSize, getFileStatus)
import System.Posix.IO (closeFd)
import System.Posix.Types (Fd (..))
import qualified Data.Vault.Lazy as Vault
import Data.X509 (CertificateChain, CertificateChainRaw (..), decodeCertificateChain)
import Network.HTTP.Date (epochTimeToHTTPDate, formatHTTPDate)
import System.Posix.Files (isRegularFile, modificationTime)
import qualified System.TimeManager as TM
import Network.Wai.Handler.WarpCore.Types

import qualified Network.WarpCore as WC
import qualified Network.WarpCore.Raw as Raw
import Network.WarpCore.Response (writeStreamPtr)
import Network.WarpCore.Server (Dispatch (..), WorkerThreads (..))
import Network.Wai.Handler.WarpCore.File (sendFile)

-- | A TCP port.
type Port = Int

-- | How to run an application. Build it from 'defaultSettings' with the
-- setters.
data Settings = Settings
  { settingsPort :: Port
  , settingsHost :: HostPreference
  , settingsOnException :: Maybe Request -> SomeException -> IO ()
  , settingsOnExceptionResponse :: SomeException -> Response
  , settingsTimeout :: Int
  , settingsInstallShutdownHandler :: IO () -> IO ()
  , settingsBeforeMainLoop :: IO ()
  , settingsOnReady :: Port -> IO ()
  , settingsServerName :: ByteString
  , settingsGracefulShutdownTimeout :: Maybe Int
  , settingsMaxTotalHeaderLength :: Int
  , settingsLogger :: Request -> H.Status -> Maybe Integer -> IO ()
  , settingsLogging :: Bool
  -- ^ 'setLogger' was called: worth a stat to log a whole file's size.
  , settingsWorkers :: Maybe Int
  , settingsMaxBodySize :: Maybe Word64
  , settingsWholeBodyMax :: Maybe Word64
  , settingsMaximumBodyFlush :: Maybe Int
  , settingsStreamHighWater :: Maybe Word64
  , settingsDispatch :: Dispatch
  , settingsSchedBatch :: Bool
  , settingsWorkerThreads :: WorkerThreads
  , settingsStatic :: [(ByteString, FilePath)]
  , settingsStaticDotfiles :: Bool
  , settingsOnOpen :: Maybe (SockAddr -> IO Bool)
  , settingsOnClose :: Maybe (SockAddr -> IO ())
  , settingsProxyProtocol :: WC.ProxyProtocol
  , settingsFork :: Maybe WC.Fork
  , settingsNoParsePath :: Bool
  , settingsAltSvc :: Maybe ByteString
  , settingsFdCacheDuration :: Maybe Int
  , settingsFileInfoCacheDuration :: Maybe Int
  , settingsSlowlorisSize :: Int
  , settingsGracefulCloseTimeout1 :: Int
  , settingsGracefulCloseTimeout2 :: Int
  , settingsTLS :: Maybe WC.TLSConfig
  }

-- | Port 3000 on every IPv4 address (@"*4"@), Warp's exception handling,
-- 30 s timeout, @Server: warpcore@, graceful shutdown that waits for
-- requests in progress, one worker per capability.
defaultSettings :: Settings
defaultSettings =
  Settings
    { settingsPort = 3000
    , settingsHost = "*4"
    , settingsOnException = defaultOnException
    , settingsOnExceptionResponse = defaultOnExceptionResponse
    , settingsTimeout = 30
    , settingsInstallShutdownHandler = const (pure ())
    , settingsBeforeMainLoop = pure ()
    , settingsOnReady = const (pure ())
    , settingsServerName = "warpcore"
    , settingsGracefulShutdownTimeout = Nothing
    , settingsMaxTotalHeaderLength = 50 * 1024
    , settingsLogger = \_ _ _ -> pure ()
    , settingsLogging = False
    , settingsWorkers = Nothing
    , settingsMaxBodySize = Nothing
    , settingsWholeBodyMax = Nothing
    , settingsMaximumBodyFlush = Just 8192
    , settingsStreamHighWater = Nothing
    , settingsDispatch = Dispatcher
    , settingsSchedBatch = True
    , settingsWorkerThreads = EngineThreads
    , settingsStatic = []
    , settingsStaticDotfiles = False
    , settingsOnOpen = Nothing
    , settingsOnClose = Nothing
    , settingsProxyProtocol = WC.ProxyProtocolNone
    , settingsFork = Nothing
    , settingsNoParsePath = False
    , settingsAltSvc = Nothing
    , settingsFdCacheDuration = Nothing
    , settingsFileInfoCacheDuration = Nothing
    , settingsSlowlorisSize = 2048
    , settingsGracefulCloseTimeout1 = 0
    , settingsGracefulCloseTimeout2 = 2000
    , settingsTLS = Nothing
    }

-- | The listener speaks TLS as this says (what
-- "Network.Wai.Handler.WarpCoreTLS"'s 'Network.Wai.Handler.WarpCoreTLS.runTLS'
-- sets; Nothing, the default, for plain HTTP). Requests then have
-- 'isSecure' True.
setTLSConfig :: Maybe WC.TLSConfig -> Settings -> Settings
setTLSConfig t s = s {settingsTLS = t}

setPort :: Port -> Settings -> Settings
setPort p s = s {settingsPort = p}

-- | Where 'runSettings' listens, as Warp binds it (streaming-commons'
-- @bindPortTCP@): the addresses @getaddrinfo@ gives for the host (none for
-- the wildcards, so every address of each family), ordered by the
-- preference, and the first that binds.
--
-- * @"*4"@ (the default) and @"!4"@: IPv4 (@0.0.0.0@), so @127.0.0.1@
--   connects and @::1@ does not; @"*4"@ falls back to IPv6 on a machine
--   without IPv4;
-- * @"*6"@ and @"!6"@: IPv6 (@::@), dual-stack as the network package
--   opens it (@IPV6_V6ONLY@ off), so @::1@ and @127.0.0.1@ both connect
--   (Warp's @"!6"@ does not mean IPv6 only either);
-- * @"*"@: the first address @getaddrinfo@ lists (@0.0.0.0@ with glibc's
--   default order);
-- * any other string: a host name or a literal address (@"127.0.0.1"@,
--   @"::1"@, @"::"@ dual-stack), resolved by @getaddrinfo@.
--
-- When that address is IPv4 the library binds it itself (one
-- @SO_REUSEPORT@ socket per worker, the fastest way to accept); otherwise
-- (IPv6, which only this dual-stack socket gets right, or a host that does
-- not resolve) the socket is opened by @bindPortTCP@ itself, with Warp's
-- error when it fails, and served as by 'runSettingsSocket'.
setHost :: HostPreference -> Settings -> Settings
setHost h s = s {settingsHost = h}

-- | Called when the application throws (with the request when there is one).
setOnException :: (Maybe Request -> SomeException -> IO ()) -> Settings -> Settings
setOnException f s = s {settingsOnException = f}

-- | The answer sent when the application throws before answering.
setOnExceptionResponse :: (SomeException -> Response) -> Settings -> Settings
setOnExceptionResponse f s = s {settingsOnExceptionResponse = f}

-- | Seconds a connection may make no progress (request head, body, response,
-- keep-alive idle). At least 1.
setTimeout :: Int -> Settings -> Settings
setTimeout t s = s {settingsTimeout = t}

-- | Given an action that starts a graceful shutdown, installs whatever should
-- call it (a signal handler, usually). 'runSettings' returns once the
-- shutdown has finished.
setInstallShutdownHandler :: (IO () -> IO ()) -> Settings -> Settings
setInstallShutdownHandler f s = s {settingsInstallShutdownHandler = f}

-- | Runs once the server accepts connections.
setBeforeMainLoop :: IO () -> Settings -> Settings
setBeforeMainLoop f s = s {settingsBeforeMainLoop = f}

-- | Like 'setBeforeMainLoop', given the port listened on (useful with port 0).
setOnReady :: (Port -> IO ()) -> Settings -> Settings
setOnReady f s = s {settingsOnReady = f}

-- | The @Server@ header; empty sends none.
setServerName :: ByteString -> Settings -> Settings
setServerName n s = s {settingsServerName = n}

-- | Seconds a graceful shutdown waits for requests in progress; 'Nothing'
-- (the default) waits as long as they take.
setGracefulShutdownTimeout :: Maybe Int -> Settings -> Settings
setGracefulShutdownTimeout t s = s {settingsGracefulShutdownTimeout = t}

-- | The largest request head in bytes (request line and header fields).
setMaxTotalHeaderLength :: Int -> Settings -> Settings
setMaxTotalHeaderLength n s = s {settingsMaxTotalHeaderLength = n}

-- | Called after each response with its status and body length when known.
setLogger :: (Request -> H.Status -> Maybe Integer -> IO ()) -> Settings -> Settings
setLogger f s = s {settingsLogger = f, settingsLogging = True}

-- | Accepted for Warp compatibility: libwarpcore speaks HTTP/1.1 only.
setHTTP2Disabled :: Settings -> Settings
setHTTP2Disabled = id

-- | Called as each connection is accepted, with the client's address as
-- the socket gives it, before anything is read (so before a PROXY protocol
-- header); 'False' closes it at once. As Warp: on the engine's worker
-- thread that owns the connection here (a callback into the runtime: keep
-- it short). An exception refuses the connection and goes to
-- 'setOnException'.
setOnOpen :: (SockAddr -> IO Bool) -> Settings -> Settings
setOnOpen f s = s {settingsOnOpen = Just f}

-- | Called once for every connection 'setOnOpen' was called for (refused
-- ones too, as Warp), with the same address, when it closes.
setOnClose :: (SockAddr -> IO ()) -> Settings -> Settings
setOnClose f s = s {settingsOnClose = Just f}

getOnOpen :: Settings -> SockAddr -> IO Bool
getOnOpen = fromMaybe (const (pure True)) . settingsOnOpen

getOnClose :: Settings -> SockAddr -> IO ()
getOnClose = fromMaybe (const (pure ())) . settingsOnClose

-- | No PROXY protocol header is expected (the default).
setProxyProtocolNone :: Settings -> Settings
setProxyProtocolNone s = s {settingsProxyProtocol = WC.ProxyProtocolNone}

-- | Every connection must start with a PROXY protocol header (version 1
-- or 2; Warp takes version 1 only), whose client address becomes
-- 'remoteHost' (and the access log's); a connection without one, or with a
-- malformed one, is closed with nothing sent.
setProxyProtocolRequired :: Settings -> Settings
setProxyProtocolRequired s = s {settingsProxyProtocol = WC.ProxyProtocolRequired}

-- | A connection may start with a PROXY protocol header (for trusted
-- clients only: any client may claim any address with it).
setProxyProtocolOptional :: Settings -> Settings
setProxyProtocolOptional s = s {settingsProxyProtocol = WC.ProxyProtocolOptional}

-- | How each request's thread is forked (default 'forkIOWithUnmask'). Warp
-- forks a thread per connection; here a thread runs each request.
setFork :: (((forall a. IO a -> IO a) -> IO ()) -> IO ()) -> Settings -> Settings
setFork f s = s {settingsFork = Just (WC.Fork f)}

-- | With True, 'rawPathInfo' is the request target as sent up to the query
-- (an absolute-form target keeps its scheme and authority), as Warp's;
-- 'pathInfo' is parsed either way.
setNoParsePath :: Bool -> Settings -> Settings
setNoParsePath b s = s {settingsNoParsePath = b}

-- | An @Alt-Svc@ field added to every answer (Warp adds it to HTTP/1.x ones).
setAltSvc :: ByteString -> Settings -> Settings
setAltSvc v s = s {settingsAltSvc = Just v}

-- | Seconds an open file stays cached after its last use, for
-- 'responseFile' and static mounts (the library's fd cache, one per
-- worker; changed files are noticed at once). 0 turns it off. Unset, the
-- library's default (10 s) applies; Warp's default is 0.
setFdCacheDuration :: Int -> Settings -> Settings
setFdCacheDuration n s = s {settingsFdCacheDuration = Just n}

-- | Seconds a file's information (size, modification time, ETag) stays
-- cached (the library's file-info cache). 0 turns it off. Unset, the
-- library's default (1 s) applies; Warp's default is 0.
setFileInfoCacheDuration :: Int -> Settings -> Settings
setFileInfoCacheDuration n s = s {settingsFileInfoCacheDuration = Just n}

-- | Kept for Warp programs; not used. Warp counts a read of at least this
-- many bytes as progress that resets its one timeout; the engine bounds a
-- request head by one deadline from its first byte that no trickle of
-- bytes extends, whatever their size, and a request body by its progress.
setSlowlorisSize :: Int -> Settings -> Settings
setSlowlorisSize n s = s {settingsSlowlorisSize = n}

-- | Kept and read back for Warp programs: Warp waits this many
-- milliseconds for the client's FIN after a close (0, its default,
-- closes at once). The engine always closes gracefully: it half-closes
-- and reads what the client still sends for up to 2 s.
setGracefulCloseTimeout1 :: Int -> Settings -> Settings
setGracefulCloseTimeout1 n s = s {settingsGracefulCloseTimeout1 = n}

-- | Kept and read back for Warp programs; Warp's HTTP/2 setting: no
-- effect (HTTP/1.1 only).
setGracefulCloseTimeout2 :: Int -> Settings -> Settings
setGracefulCloseTimeout2 n s = s {settingsGracefulCloseTimeout2 = n}

getGracefulCloseTimeout1 :: Settings -> Int
getGracefulCloseTimeout1 = settingsGracefulCloseTimeout1

getGracefulCloseTimeout2 :: Settings -> Int
getGracefulCloseTimeout2 = settingsGracefulCloseTimeout2

-- | Accepted for Warp programs; no effect: Warp's connection timeouts run on
-- this manager, the engine's run on its own per-worker timer wheels.
setManager :: TM.Manager -> Settings -> Settings
setManager _ = id

-- | Accepted for Warp programs; no effect: it logs HTTP/2 server pushes,
-- and the engine speaks HTTP/1.1 only.
setServerPushLogger :: (Request -> ByteString -> Integer -> IO ()) -> Settings -> Settings
setServerPushLogger _ = id

-- | Accepted for programs of later Warp versions; no effect: builders are
-- run through 16 KiB buffers that are reused, never one buffer as large
-- as the body.
setMaxBuilderResponseBufferSize :: Int -> Settings -> Settings
setMaxBuilderResponseBufferSize _ = id

-- | Event loops (threads with their own listener); default: the number of
-- capabilities.
setWorkers :: Int -> Settings -> Settings
setWorkers n s = s {settingsWorkers = Just n}

-- | The largest request body accepted; by default there is none, as with
-- Warp. A larger body is answered @413@ when it is known before the answer
-- began (by its @Content-Length@, or as it streams), and otherwise the
-- connection is closed; 'getRequestBodyChunk' then throws.
setMaxBodySize :: Word64 -> Settings -> Settings
setMaxBodySize n s = s {settingsMaxBodySize = Just n}

-- | The largest request body handed to the application whole (library
-- default 1 MiB, at most 64 MiB): such a body is read before the
-- application is called, and 'getRequestBodyChunk' returns it in one
-- chunk. A larger one streams: the application is called once the request
-- head is in, and 'getRequestBodyChunk' returns its bytes as they arrive
-- (at most 64 KiB at a time). With the 'InCallback' dispatch, requests
-- whose body streams run on a green thread of their own (see 'Dispatch').
setWholeBodyMax :: Word64 -> Settings -> Settings
setWholeBodyMax n s = s {settingsWholeBodyMax = Just n}

-- | Warp's setting: how much of a request body the application left unread
-- is read and dropped so that the connection can serve another request.
-- 'Nothing' reads the whole rest. With @Just n@ (default @Just 8192@, as
-- Warp) the library discards up to 256 KiB itself, and the binding reads
-- and drops the first @n - 256 KiB@ bytes first when @n@ is larger; when
-- more than that is left (about @max n 256 KiB@ bytes in all) the
-- connection is closed after the answer instead. So any @n@ up to 256 KiB
-- behaves as 256 KiB (Warp would close a connection with more than @n@
-- bytes left). A body the library handed over whole is always read, and a
-- client waiting for @100 Continue@ of a body the application never asked
-- for gets its connection closed after the answer without sending it.
setMaximumBodyFlush :: Maybe Int -> Settings -> Settings
setMaximumBodyFlush n s = s {settingsMaximumBodyFlush = n}

getMaximumBodyFlush :: Settings -> Maybe Int
getMaximumBodyFlush = settingsMaximumBodyFlush

-- | Bytes a streamed response may have queued before writes wait for the
-- client (library default 1 MiB).
setStreamHighWater :: Word64 -> Settings -> Settings
setStreamHighWater n s = s {settingsStreamHighWater = Just n}

-- | How requests reach Haskell; see 'Dispatch'. The default, 'Dispatcher',
-- never runs application code on an event loop.
setDispatch :: Dispatch -> Settings -> Settings
setDispatch d s = s {settingsDispatch = d}

-- | With the default 'Dispatcher' (default True): move the library's worker
-- threads and the threads running the dispatchers to Linux's @SCHED_BATCH@
-- policy, so that handing requests and answers between them does not
-- preempt the thread running (see 'Network.WarpCore.configSchedBatch').
-- False leaves every thread's policy alone.
setSchedBatch :: Bool -> Settings -> Settings
setSchedBatch b s = s {settingsSchedBatch = b}

-- | Serves the files under a directory at a URL prefix from the library
-- itself (sendfile, fd and stat caches, ranges, conditional requests): those
-- requests never reach the application. Repeatable; the longest prefix wins.
setStaticMount :: ByteString -> FilePath -> Settings -> Settings
setStaticMount prefix dir s = s {settingsStatic = settingsStatic s ++ [(prefix, dir)]}

-- | Whether static mounts serve dotfiles (@/.env@, @/.git/config@); by
-- default they are answered 404, except @/.well-known/@ under a mount at @/@.
setStaticDotfiles :: Bool -> Settings -> Settings
setStaticDotfiles b s = s {settingsStaticDotfiles = b}

-- | Which threads run the event loops; see 'WorkerThreads'.
setWorkerThreads :: WorkerThreads -> Settings -> Settings
setWorkerThreads w s = s {settingsWorkerThreads = w}

getPort :: Settings -> Port
getPort = settingsPort

getHost :: Settings -> HostPreference
getHost = settingsHost

getOnException :: Settings -> Maybe Request -> SomeException -> IO ()
getOnException = settingsOnException

getGracefulShutdownTimeout :: Settings -> Maybe Int
getGracefulShutdownTimeout = settingsGracefulShutdownTimeout

getMaxTotalHeaderLength :: Settings -> Int
getMaxTotalHeaderLength = settingsMaxTotalHeaderLength

-- | Prints the exception to stderr when 'defaultShouldDisplayException' says so.
defaultOnException :: Maybe Request -> SomeException -> IO ()
defaultOnException _ e =
  when (defaultShouldDisplayException e) $ hPutStrLn stderr (show e)

-- | False for a client that went away, a timeout or a thread killed.
defaultShouldDisplayException :: SomeException -> Bool
defaultShouldDisplayException se
  | Just ThreadKilled <- fromException se = False
  | Just (_ :: InvalidRequest) <- fromException se = False
  | Just (e :: IOException) <- fromException se, ioeGetErrorType e == InvalidArgument = False
  | Just (e :: WC.WarpCoreError) <- fromException se, WC.errorResult e `elem` quiet = False
  | Just (e :: IOException) <- fromException se, ioeGetErrorType e == ResourceVanished = False
  | Just (_ :: SomeAsyncException) <- fromException se = False
  | otherwise = True
  where
    quiet = [9, 6] -- CLOSED, SHUTTING_DOWN

-- | @500 Something went wrong@, as Warp answers.
defaultOnExceptionResponse :: SomeException -> Response
defaultOnExceptionResponse _ =
  responseLBS H.internalServerError500 [(H.hContentType, "text/plain; charset=utf-8")] "Something went wrong"

-- | @500@ with the exception's text (for debugging only).
exceptionResponseForDebug :: SomeException -> Response
exceptionResponseForDebug e =
  responseBuilder H.internalServerError500 [(H.hContentType, "text/plain; charset=utf-8")]
    (BB.string8 ("Exception: " ++ show e))

-- | Runs the application on a port of every IPv4 address.
run :: Port -> Application -> IO ()
run p = runSettings (setPort p defaultSettings)

-- | Like 'run', the port taken from the @PORT@ environment variable when
-- set; one that does not start with a number fails, as Warp's does.
runEnv :: Port -> Application -> IO ()
runEnv p app = do
  env <- lookupEnv "PORT"
  case env of
    Nothing -> run p app
    Just text -> case reads text of
      ((port, _) : _) -> run port app
      _ -> fail ("Invalid value in $PORT: " ++ text)

-- | Runs the application on the port and host of the settings (see
-- 'setHost' for which addresses that is) until a shutdown installed with
-- 'setInstallShutdownHandler' finishes, or this thread is killed (then the
-- server stops without grace).
runSettings :: Settings -> Application -> IO ()
runSettings s app = do
  target <- bindTarget (settingsHost s) (settingsPort s)
  case target of
    LibraryBinds address -> do
      cfg <- toConfig s address
      WC.withServer cfg (waiHandler s app) $ \server -> serveUntilStopped s server (pure ())
    WarpBinds ->
      -- Warp's own runSettings.
      bracket (bindPortTCP (settingsPort s) (settingsHost s)) NS.close $ \sock -> do
        NS.withFdSocket sock NS.setCloseOnExecIfNeeded
        runSettingsSocket s sock app

-- | Runs the application on a listening socket the program opened: TCP
-- (@bindPortTCP@, 'openFreePort') or Unix (a path it bound, say with
-- streaming-commons' @bindPath@), as Warp's 'runSettingsSocket' does. The
-- port and host of the settings are not used; the port given to
-- 'setOnReady' is the socket's (0 for a Unix socket). Requests that came
-- over a Unix socket have a 'remoteHost' of @SockAddrUnix ""@, as Warp's.
--
-- Who closes the socket, as with Warp: the caller, after this returns.
-- This never closes it otherwise, except that the shutdown action given to
-- 'setInstallShutdownHandler' closes it, and that closing it (with
-- "Network.Socket"'s 'NS.close', as that action does) shuts the server down
-- gracefully: requests in progress are answered (for at most
-- 'setGracefulShutdownTimeout'), then this returns. The server itself
-- serves a duplicate of the descriptor (close-on-exec), which it closes when
-- it stops, so after this returns by an exception (the thread killed: the
-- server stops without grace) the socket is still open and listening, and
-- may be served again; connections that arrive meanwhile wait in its
-- backlog. The socket must be listening already ('WC.WarpCoreError'
-- otherwise, with the socket left as it was); a closed one throws an
-- 'IOException'.
runSettingsSocket :: Settings -> Socket -> Application -> IO ()
runSettingsSocket s sock app = flip finally (NS.touchSocket sock) $ mask $ \restore -> do
  fd <- NS.withFdSocket sock $ \orig ->
    throwErrnoIfMinus1 "Network.Wai.Handler.WarpCore.runSettingsSocket" (Raw.c_warpcore_hs_dup_cloexec orig)
  -- The library owns the duplicate once it started; a start that failed
  -- left it ours.
  let start = toConfig s ("fd://" ++ show fd) >>= \cfg -> WC.start cfg (waiHandler s app)
  server <- start `onException` closeFd (Fd fd)
  let serve = serveUntilStopped s server (NS.close sock)
  restore (bracket (forkIO (watchClose sock (stopGracefully s server))) killThread (const serve))
    `finally` WC.close server

-- Installs the shutdown action (`before`, then a graceful shutdown), runs
-- the hooks for a server that listens and waits until it has stopped.
serveUntilStopped :: Settings -> WC.Server -> IO () -> IO ()
serveUntilStopped s server before = do
  settingsInstallShutdownHandler s (before `finally` stopGracefully s server)
  settingsBeforeMainLoop s
  settingsOnReady s (WC.serverPort server)
  WC.wait server

-- Starts the server's graceful shutdown (on a thread of its own: it returns
-- once every worker has stopped).
stopGracefully :: Settings -> WC.Server -> IO ()
stopGracefully s server = void (forkIO (WC.shutdown server grace))
  where
    grace = maybe maxGrace (\secs -> max 0 secs * 1000) (settingsGracefulShutdownTimeout s)
    maxGrace = fromIntegral (maxBound :: Word32)

-- Warp stops when the program closes its listening socket; so does this,
-- although the server listens on a duplicate. A wait in GHC's IO manager for
-- the socket to be writable (a listening socket never is) ends with an
-- exception when "Network.Socket"'s close (through closeFdWith) closes it.
-- A socket reported writable no longer listens (shut down), unless this
-- kernel reports listening sockets writable: then a close goes unnoticed.
watchClose :: Socket -> IO () -> IO ()
watchClose sock stop = do
  fd <- NS.unsafeFdSocket sock
  waited <- try (threadWaitWrite (Fd fd))
  case waited of
    Left (_ :: IOException) -> stop
    Right () -> do
      listens <- Raw.c_warpcore_hs_socket_listens fd
      when (listens /= 1) stop

-- | Opens a listening socket on a free port of 127.0.0.1 and returns both,
-- as Warp's (for 'runSettingsSocket').
openFreePort :: IO (Port, Socket)
openFreePort = bindRandomPortTCP "127.0.0.1"

-- Who binds the address 'runSettings' listens on.
data BindTarget
  = LibraryBinds String
  -- ^ The library, this @HOST:PORT@ (IPv4).
  | WarpBinds
  -- ^ streaming-commons' bindPortTCP, as Warp.

-- The address Warp's bindPortTCP (streaming-commons 0.2.2) binds first: the
-- host looked up with AI_PASSIVE (no host for the wildcards), IPv4 or IPv6
-- first as the preference says. An IPv4 address the library binds the same
-- way (SO_REUSEADDR, TCP_NODELAY on accepted connections), as one socket
-- per worker. Anything else is bindPortTCP's: IPv6, which it opens
-- dual-stack (the library's IPv6 listeners are IPv6 only), and a lookup
-- that fails, for Warp's error. (When that first IPv4 address cannot be
-- bound, Warp would try the next; the library's error is thrown instead.)
bindTarget :: HostPreference -> Port -> IO BindTarget
bindTarget pref port = do
  found <- try (getAddrInfo (Just hints) host (Just (show port)))
  pure $ case found of
    Right addrs
      | (first : _) <- ordered addrs
      , SockAddrInet p a <- addrAddress first ->
          let (a1, a2, a3, a4) = hostAddressToTuple a
           in LibraryBinds (intercalate "." (map show [a1, a2, a3, a4]) ++ ":" ++ show p)
    Right _ -> WarpBinds
    Left (_ :: IOException) -> WarpBinds
  where
    hints = defaultHints {addrFlags = [AI_PASSIVE], addrSocketType = Stream}
    host = case pref of
      Host h -> Just h
      _ -> Nothing
    ordered addrs = case pref of
      HostIPv4 -> v4 ++ v6
      HostIPv4Only -> v4
      HostIPv6 -> v6 ++ v4
      HostIPv6Only -> v6
      _ -> addrs
      where
        v4 = filter ((/= AF_INET6) . addrFamily) addrs
        v6 = filter ((== AF_INET6) . addrFamily) addrs

-- | Runs the application on a free port of 127.0.0.1 for the duration of
-- the action, given the port.
withApplication :: IO Application -> (Port -> IO a) -> IO a
withApplication = withApplicationSettings defaultSettings

-- | 'withApplication' with settings (their host and port are replaced).
withApplicationSettings :: Settings -> IO Application -> (Port -> IO a) -> IO a
withApplicationSettings s mkApp action = do
  app <- mkApp
  cfg <- toConfig s "127.0.0.1:0"
  WC.withServer cfg (waiHandler s app) (action . WC.serverPort)

-- | 'withApplication' for tests: an exception the application throws
-- (that 'defaultShouldDisplayException' shows) is thrown to the calling
-- thread too, as Warp's.
testWithApplication :: IO Application -> (Port -> IO a) -> IO a
testWithApplication = testWithApplicationSettings defaultSettings

-- | 'testWithApplication' with settings.
testWithApplicationSettings :: Settings -> IO Application -> (Port -> IO a) -> IO a
testWithApplicationSettings s mkApp action = do
  caller <- myThreadId
  app <- mkApp
  let wrapped req respond =
        app req respond `catch` \e -> do
          when (defaultShouldDisplayException e) (throwTo caller e)
          throwIO e
  withApplicationSettings s (pure wrapped) action

-- | Pauses the request's answer timeout (Warp's 'pauseTimeout'): the
-- application may take as long as it needs before it begins its answer
-- (otherwise 'setTimeout' seconds, after which the client gets 503). The
-- client's own waits stay bounded (a body that stops coming, an answer it
-- stops reading). Does nothing for a request that did not come from this
-- handler.
pauseTimeout :: Request -> IO ()
pauseTimeout = fromMaybe (pure ()) . Vault.lookup pauseTimeoutKey . vault

-- | The size and modification time of a file (Warp's 'getFileInfo'; a
-- @stat@ here), or an 'IOException' for one that is missing or not a
-- regular file.
getFileInfo :: Request -> FilePath -> IO FileInfo
getFileInfo req = fromMaybe (\_ -> throwIO (userError "getFileInfo")) (Vault.lookup fileInfoKey (vault req))

-- | The client's TLS certificate chain (Warp's 'clientCertificate'), as
-- verified by the listener (see
-- 'Network.Wai.Handler.WarpCoreTLS.tlsRequireClientCert'): 'Nothing' on a
-- plain connection and when the client presented none. Parsed when asked
-- for; the DER is in 'getTLSInfo'\'s 'WC.tlsClientCertificates'.
clientCertificate :: Request -> Maybe CertificateChain
clientCertificate = (>>= id) . Vault.lookup clientCertificateKey . vault

-- | What the request's TLS connection negotiated (version, cipher, ALPN,
-- SNI, resumption, the client's chain as DER); 'Nothing' on a plain
-- connection ('isSecure' False) and for a request that did not come from
-- this handler.
getTLSInfo :: Request -> Maybe WC.TLSInfo
getTLSInfo = Vault.lookup tlsInfoKey . vault

-- | A request's HTTP/2 data: always 'Nothing' (HTTP/1.1 only), as for
-- Warp's HTTP/1.1 requests.
getHTTP2Data :: Request -> IO (Maybe HTTP2Data)
getHTTP2Data _ = pure Nothing

-- | Does nothing (HTTP/1.1 only), as for Warp's HTTP/1.1 requests.
setHTTP2Data :: Request -> Maybe HTTP2Data -> IO ()
setHTTP2Data _ _ = pure ()

-- | Does nothing (HTTP/1.1 only), as for Warp's HTTP/1.1 requests.
modifyHTTP2Data :: Request -> (Maybe HTTP2Data -> Maybe HTTP2Data) -> IO ()
modifyHTTP2Data _ _ = pure ()

pauseTimeoutKey :: Vault.Key (IO ())
pauseTimeoutKey = unsafePerformIO Vault.newKey
{-# NOINLINE pauseTimeoutKey #-}

fileInfoKey :: Vault.Key (FilePath -> IO FileInfo)
fileInfoKey = unsafePerformIO Vault.newKey
{-# NOINLINE fileInfoKey #-}

clientCertificateKey :: Vault.Key (Maybe CertificateChain)
clientCertificateKey = unsafePerformIO Vault.newKey
{-# NOINLINE clientCertificateKey #-}

tlsInfoKey :: Vault.Key WC.TLSInfo
tlsInfoKey = unsafePerformIO Vault.newKey
{-# NOINLINE tlsInfoKey #-}

-- The vault entries of a TLS request: its facts, and the client's chain
-- parsed lazily (as Warp, 'Nothing' without one or when it does not parse).
withTLS :: Maybe WC.TLSInfo -> Vault.Vault -> Vault.Vault
withTLS Nothing v = v
withTLS (Just t) v = Vault.insert tlsInfoKey t (Vault.insert clientCertificateKey chain v)
  where
    chain = case WC.tlsClientCertificates t of
      [] -> Nothing
      ders -> either (const Nothing) Just (decodeCertificateChain (CertificateChainRaw ders))

statFileInfo :: FilePath -> IO FileInfo
statFileInfo path = do
  fs <- getFileStatus path
  if isRegularFile fs
    then do
      let time = epochTimeToHTTPDate (modificationTime fs)
      pure (FileInfo path (fromIntegral (fileSize fs)) time (formatHTTPDate time))
    else throwIO (userError ("getFileInfo: not a regular file: " ++ path))

-- The library's config for the settings, listening on `address`.
toConfig :: Settings -> String -> IO WC.Config
toConfig s address = do
  caps <- getNumCapabilities
  let secs = max 1 (settingsTimeout s) * 1000
  pure
    WC.defaultConfig
      { WC.configListen = address
      , WC.configWorkers = fromMaybe caps (settingsWorkers s)
      , WC.configDispatch = settingsDispatch s
      , WC.configSchedBatch = settingsSchedBatch s
      , WC.configWorkerThreads = settingsWorkerThreads s
      , WC.configServerName = Just (settingsServerName s)
        -- No limit unless set, as with Warp.
      , WC.configMaxBodySize = Just (fromMaybe maxBound (settingsMaxBodySize s))
      , WC.configWholeBodyMax = settingsWholeBodyMax s
      , WC.configMaximumBodyFlush = settingsMaximumBodyFlush s
      , WC.configMaxHeadSize = Just (fromIntegral (settingsMaxTotalHeaderLength s))
      , WC.configStreamHighWater = settingsStreamHighWater s
      , WC.configTimeouts = [(t, secs) | t <- [minBound .. maxBound]]
      , WC.configOnException = settingsOnException s Nothing
      , WC.configStatic = settingsStatic s
      , WC.configStaticDotfiles = settingsStaticDotfiles s
      , WC.configProxyProtocol = settingsProxyProtocol s
      , WC.configOnOpen = (\f c -> f (connectionAddress c)) <$> settingsOnOpen s
      , WC.configOnClose = (\f c -> f (connectionAddress c)) <$> settingsOnClose s
      , WC.configFork = settingsFork s
      , WC.configFileCache = case (settingsFdCacheDuration s, settingsFileInfoCacheDuration s) of
          (Nothing, Nothing) -> Nothing
          (fd, info) -> Just (maybe 10000 ms fd, maybe 1000 ms info)
      , WC.configTLS = settingsTLS s
      }
  where
    ms n = fromIntegral (max 0 n) * 1000
    connectionAddress c = peerAddress (WC.connectionPeerIp c) (WC.connectionPeerPort c)

-- | The library handler for a WAI application.
waiHandler :: Settings -> Application -> WC.Handler
waiHandler s app creq res = do
  base <- toWaiRequest creq
  let req =
        base
          { vault =
              Vault.insert pauseTimeoutKey (WC.pauseTimeout res) $
                Vault.insert fileInfoKey statFileInfo (withTLS (WC.requestTls creq) (vault base))
          , rawPathInfo = if settingsNoParsePath s then B.takeWhile (/= 63) (WC.requestTarget creq) else rawPathInfo base
          }
  outcome <- try (app req (sendResponse s req refuse res))
  case outcome of
    Right ResponseReceived -> pure ()
    Left (e :: SomeException) -> do
      settingsOnException s (Just req) e `catch` \(_ :: SomeException) -> pure ()
      st <- WC.responderState res
      when (st == WC.Fresh) $
        void (try (sendResponse s req refuse res (settingsOnExceptionResponse s e)) :: IO (Either SomeException ResponseReceived))
  where
    -- Before a complete answer (not a stream, whose body function may read
    -- yet) to a client waiting for 100 Continue of a body the application
    -- never asked for: let the body go, so that the client is not told to
    -- send it (the connection closes after the answer instead).
    refuse = case WC.requestBodyReader creq of
      Just reader | expects100 -> do
        asked <- WC.bodyAsked reader
        when (not asked) (WC.releaseBody reader)
      _ -> pure ()
    expects100 = maybe False ((== "100-continue") . B8.map toLowerAscii) (WC.requestHeader "expect" creq)
    toLowerAscii c = if c >= 'A' && c <= 'Z' then toEnum (fromEnum c + 32) else c

-- | A WAI request from the library's copy of one. A body that streams is
-- read chunk by chunk by 'getRequestBodyChunk'; a whole one is handed out
-- as one chunk.
toWaiRequest :: WC.Request -> IO Request
toWaiRequest r = do
  (readBody, bodyLength) <- case WC.requestBodyReader r of
    Just reader ->
      pure
        ( WC.readChunk reader `catch` \(e :: WC.WarpCoreError) -> throwIO (if WC.errorResult e == Raw.resultClosed then toException ConnectionClosedByPeer else toException e)
        , case lookup H.hContentLength headers >>= B8.readInteger of
            Just (n, "") | n >= 0 -> KnownLength (fromInteger n)
            _ -> ChunkedBody
        )
    Nothing -> do
      bodyRef <- newIORef (WC.requestBody r)
      pure (atomicModifyIORef' bodyRef (\b -> (B.empty, b)), KnownLength (fromIntegral (B.length (WC.requestBody r))))
  let target = WC.requestTarget r
      rawPath = pathOf target
      query = WC.requestQuery r
      (major, minor) = WC.requestVersion r
  pure
    defaultRequest
      { requestBody = readBody
      , requestMethod = WC.requestMethod r
      , httpVersion = H.HttpVersion major minor
      , rawPathInfo = rawPath
      , rawQueryString = if B.null query then "" else B.cons 63 query
      , requestHeaders = headers
      , isSecure = WC.requestTlsVersion r /= 0
      , remoteHost = peerAddress (WC.requestPeerIp r) (WC.requestPeerPort r)
      , pathInfo = H.decodePathSegments rawPath
      , queryString = H.parseQuery query
      , requestBodyLength = bodyLength
      , requestHeaderHost = lookup H.hHost headers
      , requestHeaderRange = lookup H.hRange headers
      , requestHeaderReferer = lookup H.hReferer headers
      , requestHeaderUserAgent = lookup H.hUserAgent headers
      }

  where
    headers = [(CI.mk n, v) | (n, v) <- WC.requestHeaders r]

-- The raw path of a target: up to '?', without scheme and authority for an
-- absolute-form target.
pathOf :: ByteString -> ByteString
pathOf target
  -- origin-form, nearly every request: no copy
  | not (B.null target) && BU.unsafeHead target == 47 = B.takeWhile (/= 63) target
  | otherwise = B.takeWhile (/= 63) withoutAuthority
  where
    withoutAuthority
      | "http://" `B.isPrefixOf` lower || "https://" `B.isPrefixOf` lower =
          let rest = B.drop 2 (B.dropWhile (/= 47) target) -- after "//"
              path = B.dropWhile (\c -> c /= 47 && c /= 63) rest
           in if B.null path || B.head path == 63 then B.cons 47 path else path
      | otherwise = target
    lower = B8.map toLowerAscii (B.take 8 target)
    toLowerAscii c = if c >= 'A' && c <= 'Z' then toEnum (fromEnum c + 32) else c

-- The peer as a SockAddr; parsed only when the application looks. A Unix
-- socket's client is "unix:" (unnamed, as nearly always): SockAddrUnix "",
-- as Warp's accept gives it.
peerAddress :: ByteString -> Int -> SockAddr
peerAddress ip port
  | "unix:" `B.isPrefixOf` ip = SockAddrUnix (B8.unpack (B.drop 5 ip))
  | otherwise = case map B8.readInt (B8.split '.' ip) of
      [Just (a, ""), Just (b, ""), Just (c, ""), Just (d, "")] ->
        SockAddrInet (fromIntegral port) (tupleToHostAddress (fromIntegral a, fromIntegral b, fromIntegral c, fromIntegral d))
      _ -> unsafePerformIO $ do
        let hints = defaultHints {addrFlags = [AI_NUMERICHOST, AI_NUMERICSERV]}
        found <- try (getAddrInfo (Just hints) (Just (B8.unpack ip)) (Just (show port)))
        pure $ case found :: Either SomeException [AddrInfo] of
          Right (ai : _) -> addrAddress ai
          _ -> SockAddrInet (fromIntegral port) 0
{-# NOINLINE peerAddress #-}

sendResponse :: Settings -> Request -> IO () -> WC.Responder -> Response -> IO ResponseReceived
sendResponse s req refuse res (ResponseRaw rawApp fallback) = sendRaw s req refuse res rawApp fallback
sendResponse s req refuse res rsp0 = do
  let rsp = maybe rsp0 (\v -> mapResponseHeaders (("Alt-Svc", v) :) rsp0) (settingsAltSvc s)
  case rsp of
    ResponseStream {} -> pure ()
    _ -> refuse
  -- The application's reason phrase, as Warp sends it (a file's status
  -- may become 304, 206, ... by the library: only a status other than 200
  -- is sure to be sent as given).
  let st0 = responseStatus rsp
      file = case rsp of
        ResponseFile {} -> True
        _ -> False
  when (not (H.statusCode st0 == 200 && (file || H.statusMessage st0 == "OK"))) $
    WC.setReason res (H.statusMessage st0)
  (st, len) <- send rsp
  settingsLogger s req st len `catch` \(_ :: SomeException) -> pure ()
  pure ResponseReceived
  where
    send (ResponseBuilder st hs b) = do
      WC.respondBuilder res (H.statusCode st) (plain hs) b
      pure (st, Nothing)
    send (ResponseFile st hs path Nothing) = do
      -- The library sends the file itself (sendfile; conditionals and ranges),
      -- inside the handler call or from this thread after it.
      sent <- try (WC.respondFile res (H.statusCode st) (plain hs) path)
      case sent of
        Right () | settingsLogging s -> do
          size <- try (fileSize <$> getFileStatus path)
          pure (st, either (\(_ :: IOException) -> Nothing) (Just . fromIntegral) size)
        Right () -> pure (st, Nothing)
        Left (_ :: WC.WarpCoreError) -> sendFile req res st hs path Nothing
    send (ResponseFile st hs path part) = sendFile req res st hs path part
    send (ResponseStream st hs body) = do
      let (len, hs') = takeLength hs
      len64 <- traverse contentLength len
      WC.startStream res (H.statusCode st) (plain hs') len64
      streamBody res body
      WC.endStream res
      pure (st, len)
    send (ResponseRaw _ fallback) = send fallback -- (sendRaw takes these first)
    plain hs = [(CI.original k, v) | (k, v) <- hs]

-- | 'responseRaw', as Warp runs it: the connection is taken over with
-- nothing sent ('WC.takeOver'), and the raw application is given a @recv@
-- (empty at the end of the stream or once the connection is closed) and a
-- @send@ (throws an 'IOException', @ResourceVanished@, once it is closed).
-- When it returns or throws, the connection is closed (the handle freed);
-- its exception goes on to the application and 'setOnException', and no
-- answer is sent for it. A request that did not ask to switch protocols
-- (HTTP/1.1, @Connection: upgrade@, an @Upgrade@ field) cannot be taken
-- over: the fallback response is sent instead. Nothing is logged for a
-- taken-over connection (Warp logs none either).
--
-- Inside the handler call ('InCallback'), on a worker thread where reads
-- never wait, the raw application runs on a green thread of its own; its
-- exception goes to 'setOnException' there.
sendRaw
  :: Settings -> Request -> IO () -> WC.Responder
  -> (IO ByteString -> (ByteString -> IO ()) -> IO ()) -> Response -> IO ResponseReceived
sendRaw s req refuse res rawApp fallback = mask $ \restore -> do
  taken <- WC.takeOver res
  case taken of
    Nothing -> restore (sendResponse s req refuse res fallback)
    Just up
      | WC.responderInline res -> do
          _ <- forkIOWithUnmask $ \unmask ->
            (unmask (runRaw up) `catch` report) `finally` WC.freeUpgraded up
          pure ResponseReceived
      | otherwise -> do
          restore (runRaw up) `finally` WC.freeUpgraded up
          pure ResponseReceived
  where
    runRaw up = rawApp (WC.readUpgraded up) (WC.writeUpgraded up)
    report e = settingsOnException s (Just req) e `catch` \(_ :: SomeException) -> pure ()

-- The application's Content-Length for a stream, and the other fields.
takeLength :: H.ResponseHeaders -> (Maybe Integer, H.ResponseHeaders)
takeLength hs = case lookup H.hContentLength hs >>= B8.readInteger of
  Just (n, "") | n >= 0 -> (Just n, filter ((/= H.hContentLength) . fst) hs)
  _ -> (Nothing, filter ((/= H.hContentLength) . fst) hs)

-- A Content-Length the library can take (@int64_t@). A larger one throws
-- (the application's error: answered 500) instead of wrapping into another
-- length (2^64 + 6 was a promise of 6 bytes).
contentLength :: Integer -> IO Int64
contentLength n
  | n > toInteger (maxBound :: Int64) =
      throwIO (WC.WarpCoreError Raw.resultInvalidArgument "warpcore_response_start" ("Content-Length " ++ show n ++ " is out of range"))
  | otherwise = pure (fromInteger n)

-- Runs a streaming body through a 16 KiB buffer: builders fill it, a full
-- buffer or a flush writes it (the library copies it), large strict chunks
-- inserted into a builder go as they are.
streamBody :: WC.Responder -> StreamingBody -> IO ()
streamBody res body = do
  buf <- mallocForeignPtrBytes size :: IO (ForeignPtr Word8)
  used <- newIORef (0 :: Int)
  let flush = do
        n <- readIORef used
        when (n > 0) $ do
          writeIORef used 0
          withForeignPtr buf $ \p -> writeStreamPtr res p n
      fill writer = do
        n <- readIORef used
        (k, next) <- withForeignPtr buf $ \p -> writer (p `plusPtr` n) (size - n)
        writeIORef used (n + k)
        case next of
          BBE.Done -> pure ()
          BBE.More minSize w
            | minSize <= size -> flush >> fill w
            | otherwise -> do
                flush
                big <- BI.mallocByteString minSize
                (k', next') <- withForeignPtr big $ \p -> w p minSize
                WC.writeStream res (BI.fromForeignPtr big 0 k')
                after next'
          BBE.Chunk bs w -> flush >> WC.writeStream res bs >> fill w
      after BBE.Done = pure ()
      after (BBE.More _ w) = fill w
      after (BBE.Chunk bs w) = WC.writeStream res bs >> fill w
  body (fill . BBE.runBuilder) flush
  flush
  where
    size = 16384
