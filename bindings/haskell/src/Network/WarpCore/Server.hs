{-# LANGUAGE RankNTypes #-}
{-# LANGUAGE ScopedTypeVariables #-}
-- | Starting, running and stopping a server, and how requests reach Haskell.
--
-- By default ('Dispatcher') no Haskell code runs on the library's worker
-- threads: a handler written in C copies each request into one buffer,
-- queues it and, for the first request of a batch, wakes a Haskell
-- dispatcher thread with @hs_try_putmvar@ (which never waits for the GHC
-- runtime). The dispatcher (one per capability) takes the whole batch and
-- forks one green thread per request; that thread runs the handler and
-- answers through the deferred response. Answers are batched the same way
-- on the library's side (one wakeup per batch). Both sides' threads are moved
-- to @SCHED_BATCH@ ('configSchedBatch') so that a wakeup does not preempt
-- the waker: under load a whole batch of requests costs one thread handoff
-- each way, not one per request.
module Network.WarpCore.Server
  ( -- * Configuration
    Config (..)
  , defaultConfig
  , Dispatch (..)
  , WorkerThreads (..)
  , Timeout (..)
  , ProxyProtocol (..)
  , Connection (..)
  , Fork (..)
    -- * Handlers
  , Handler
    -- * Servers
  , Server
  , start
  , shutdown
  , wait
  , close
  , withServer
  , run
  , serverPort
  , serverWorkers
  , serverListeners
  , reload
  , stats
  , fileCacheStats
  , shutdownReport
  , reopenLogs
  , Raw.Stats (..)
  , Raw.FileCacheStats (..)
  , Raw.ShutdownReport (..)
    -- * Library
  , version
  ) where

import Control.Concurrent
import Control.Exception hiding (Handler)
import Control.Monad (forM, forM_, unless, void, when)
import Data.ByteString (ByteString)
import qualified Data.ByteString as B
import Data.IORef
import Data.List (isPrefixOf)
import Data.Maybe (isJust)
import qualified Data.ByteString.Char8 as B8
import qualified Data.ByteString.Unsafe as BU
import Data.Word (Word32, Word64)
import Foreign.C.String (peekCString)
import Foreign.C.Types (CBool (..), CChar, CSize)
import Foreign.ForeignPtr
import Foreign.Marshal.Alloc (alloca, allocaBytes)
import Foreign.Ptr
import Foreign.StablePtr (freeStablePtr)
import Foreign.Storable (peek)
import GHC.Conc (TVar, atomically, newStablePtrPrimMVar, newTVarIO, readTVar, retry, writeTVar)
import System.IO (hPutStrLn, stderr)
import System.IO.Unsafe (unsafePerformIO)

import Network.WarpCore.Body (engineBodyFlush, finishBody, takeBodyReader)
import Network.WarpCore.Error
import qualified Network.WarpCore.Raw as Raw
import Network.WarpCore.Request
import Network.WarpCore.Response
import Network.WarpCore.TLS (TLSConfig, addTLSListener)

-- | How requests travel from the library's worker threads to Haskell.
data Dispatch
  = Dispatcher
  -- ^ The default. A C handler queues each request; per-capability Haskell
  -- dispatcher threads fork one green thread per request. No Haskell code
  -- runs on a worker thread.
  | ForkInCallback
  -- ^ A Haskell callback (a @"wrapper"@ FunPtr) copies the request, forks a
  -- green thread for it and returns. Each call enters the GHC runtime from
  -- the worker thread.
  | InCallback
  -- ^ The handler runs inside the callback, on the worker thread, and answers
  -- on the library's fast path. Only for handlers that never block: while
  -- one runs its worker serves nobody else. A request whose body streams
  -- (larger than 'configWholeBodyMax') is the exception: its handler runs
  -- on a green thread of its own, as with 'ForkInCallback', since reading
  -- the body means waiting for the very worker thread the callback holds.
  deriving (Eq, Show, Read)

-- | Which threads run the library's event loops.
data WorkerThreads
  = EngineThreads
  -- ^ Threads the library starts (the default).
  | BoundThreads
  -- ^ Haskell bound threads ('forkOS'), each inside a @safe@
  -- @warpcore_server_run_worker@ call: callbacks then enter the runtime from a
  -- thread it already knows.
  deriving (Eq, Show, Read)

-- | The waits a timeout bounds (@warpcore_timeout@).
data Timeout
  = HeaderTimeout
  -- ^ a request head must arrive whole within this time of its first byte
  | IdleTimeout
  -- ^ a keep-alive connection may wait this long for its next request
  | BodyTimeout
  -- ^ a request body may make no progress for this long
  | WriteTimeout
  -- ^ a response may make no progress for this long
  | AnswerTimeout
  -- ^ a deferred answer must begin this long after the handler returned, or
  -- the client gets 503 and the connection closes
  deriving (Eq, Show, Enum, Bounded)

-- | Whether connections start with a PROXY protocol header (HAProxy's, v1
-- or v2; @warpcore_config_set_proxy_protocol@): its client address is then
-- the request's peer.
data ProxyProtocol
  = ProxyProtocolNone
  -- ^ no header (the default)
  | ProxyProtocolRequired
  -- ^ every connection starts with one; one without (or with a malformed
  -- one) is closed with nothing sent
  | ProxyProtocolOptional
  -- ^ a header is taken when there is one (for trusted clients only)
  deriving (Eq, Show, Read, Enum, Bounded)

-- | A connection as the connection hooks see it
-- (@warpcore_connection_info@): the socket's peer, the worker that owns it
-- and a number that pairs its close with its open.
data Connection = Connection
  { connectionPeerIp :: !ByteString
  -- ^ @127.0.0.1@, @::1@, or @unix:@ on a Unix socket
  , connectionPeerPort :: !Int
  , connectionWorker :: !Int
  , connectionId :: !Word64
  }
  deriving (Eq, Show)

-- | How request threads are forked (Warp's @setFork@): given an action that
-- takes an @unmask@, start a thread that runs it.
newtype Fork = Fork (((forall a. IO a -> IO a) -> IO ()) -> IO ())

-- | Server settings. Unset ('Nothing') limits keep the library's defaults.
data Config = Config
  { configListen :: String
  -- ^ @HOST:PORT@ (@[::1]:80@ for IPv6; port 0 picks a free port), or any
  -- form of @warpcore_config_add_listener@: @unix:PATH@ (a Unix socket the
  -- server makes, and removes when it stops), or @fd://N@ (a listening
  -- socket the program opened, which the server owns once it started: it
  -- closes N when it stops; a start that fails leaves N open).
  , configWorkers :: Int
  -- ^ Event loops (0: one per core).
  , configDispatch :: Dispatch
  , configWorkerThreads :: WorkerThreads
  , configServerName :: Maybe ByteString
  -- ^ The @Server@ header (empty: none).
  , configMaxBodySize :: Maybe Word64
  -- ^ The largest request body accepted (library default 1 MiB; 'maxBound'
  -- for no limit). Applies to bodies that stream too: one that passes it is
  -- answered @413@ if the answer has not begun, and its reader throws.
  , configWholeBodyMax :: Maybe Word64
  -- ^ The largest body handed to the handler whole in 'requestBody'
  -- (library default 1 MiB, at most 64 MiB); a larger one streams through
  -- 'requestBodyReader' ("Network.WarpCore.Body").
  , configMaximumBodyFlush :: Maybe Int
  -- ^ What is done with the part of a streamed body the handler left
  -- unread, as Warp's @setMaximumBodyFlush@: 'Nothing' reads and drops the
  -- whole rest (the connection is always reused); @Just n@ (the default
  -- @Just 262144@) keeps the connection when at most about @max n 262144@
  -- bytes were left, else closes it after the answer. The library itself
  -- discards up to 256 KiB ('Network.WarpCore.Body.engineBodyFlush'); the
  -- binding reads the rest of a larger @n@ before it releases the reader.
  -- See 'Network.WarpCore.Body.finishBody'.
  , configMaxHeadSize :: Maybe Word32
  , configMaxRequestLine :: Maybe Word32
  , configMaxHeaderCount :: Maybe Word32
  , configStreamHighWater :: Maybe Word64
  , configTimeouts :: [(Timeout, Int)]
  -- ^ In milliseconds (1 s to 1 day).
  , configSharePort :: Bool
  , configStatic :: [(ByteString, FilePath)]
  -- ^ Static mounts served by the library itself (URL prefix, directory):
  -- sendfile, fd and stat caches, ranges and conditional requests; requests
  -- under a prefix never reach the handler.
  , configStaticDotfiles :: Bool
  -- ^ Whether static mounts serve paths with a segment starting with @.@
  -- (@/.env@, @/.git/config@); when False (the default) they are answered
  -- 404, except @/.well-known/@ under a mount at @/@. See
  -- @warpcore_config_set_static_dotfiles@.
  , configMaxConnections :: Maybe Word32
  , configCoalesceWait :: Maybe Word32
  -- ^ The longest a busy worker naps before polling, in microseconds (0 to
  -- 1000, 0 = off; library default 50); see
  -- @warpcore_config_set_coalesce_wait@.
  , configFileCache :: Maybe (Word64, Word64)
  -- ^ (fd, info) cache lifetimes in milliseconds.
  , configAccessLogFile :: Maybe FilePath
  -- ^ Apache combined format, appended to this file.
  , configAccessLog :: Maybe (ByteString -> IO ())
  -- ^ Receives batches of access-log lines (on worker threads), instead of
  -- 'configAccessLogFile' when both are set.
  , configErrorLog :: Maybe (Word32 -> ByteString -> IO ())
  -- ^ Receives the library's error-log messages with their level.
  , configOnException :: SomeException -> IO ()
  -- ^ Called when a handler throws (the binding then answers 500 if it can).
  , configProxyProtocol :: ProxyProtocol
  -- ^ Whether connections start with a PROXY protocol header (default none).
  , configOnOpen :: Maybe (Connection -> IO Bool)
  -- ^ Told of each connection as it is accepted, before any byte is read,
  -- on the worker thread that owns it (a @"wrapper"@ callback: keep it
  -- short); 'False' closes it at once. An exception refuses it (and goes to
  -- 'configOnException').
  , configOnClose :: Maybe (Connection -> IO ())
  -- ^ Told once of every connection 'configOnOpen' was told of (refused ones
  -- too), when it closes, on its worker thread; without 'configOnOpen',
  -- of every connection.
  , configFork :: Maybe Fork
  -- ^ Forks each request's thread ('Dispatcher' and 'ForkInCallback'; an
  -- 'InCallback' request runs where it is); default 'forkIO'.
  , configTLS :: Maybe TLSConfig
  -- ^ The listener speaks TLS as this says ("Network.WarpCore.TLS"); its
  -- certificate files are read again at every 'reload'.
  , configSchedBatch :: Bool
  -- ^ With 'Dispatcher' (the default True): the library's worker threads
  -- (the library's own setting, @warpcore_config_set_sched_batch@) and the
  -- OS threads running the dispatchers are moved to Linux's @SCHED_BATCH@
  -- policy, so that waking one another does not preempt the thread running.
  -- On a core shared by a worker and a capability, requests and answers then
  -- cross in batches instead of one context switch each. Threads already
  -- under another policy (real-time, idle) are left alone. A 'reload' whose
  -- config turns it off puts the worker threads back; the dispatchers' stay
  -- until the server closes.
  }

-- Whether the threads of both sides move to SCHED_BATCH: with 'Dispatcher' only.
schedBatch :: Config -> Bool
schedBatch cfg = configSchedBatch cfg && configDispatch cfg == Dispatcher

-- | Listen on @127.0.0.1:8080@ with one worker per core, library defaults.
defaultConfig :: Config
defaultConfig =
  Config
    { configListen = "127.0.0.1:8080"
    , configWorkers = 0
    , configDispatch = Dispatcher
    , configWorkerThreads = EngineThreads
    , configServerName = Nothing
    , configMaxBodySize = Nothing
    , configWholeBodyMax = Nothing
    , configMaximumBodyFlush = Just engineBodyFlush
    , configMaxHeadSize = Nothing
    , configMaxRequestLine = Nothing
    , configMaxHeaderCount = Nothing
    , configStreamHighWater = Nothing
    , configTimeouts = []
    , configSharePort = False
    , configStatic = []
    , configStaticDotfiles = False
    , configMaxConnections = Nothing
    , configCoalesceWait = Nothing
    , configFileCache = Nothing
    , configAccessLogFile = Nothing
    , configAccessLog = Nothing
    , configErrorLog = Nothing
    , configOnException = \e -> hPutStrLn stderr ("warpcore: handler failed: " ++ show e)
    , configTLS = Nothing
    , configSchedBatch = True
    , configProxyProtocol = ProxyProtocolNone
    , configOnOpen = Nothing
    , configOnClose = Nothing
    , configFork = Nothing
    }

-- | Answers one request through the 'Responder', exactly once. It runs in its
-- own green thread (except with 'InCallback'). If it returns or throws
-- without finishing its answer, the binding answers @500@ (or ends the
-- stream it started).
type Handler = Request -> Responder -> IO ()

-- | A running server. Release it with 'close' (or use 'withServer' / 'run').
-- Once it is closed, 'reload', 'stats', 'fileCacheStats', 'shutdownReport'
-- and 'reopenLogs' throw 'WarpCoreError' ('Raw.resultInvalidState', "the
-- server is closed"); 'shutdown', 'wait' and 'close' do nothing more.
data Server = Server
  { serverPtr :: !(Ptr Raw.Server)
  , serverPort :: !Int
  -- ^ The port it listens on (the real one when 0 was asked for).
  , serverWorkers :: !Int
  -- ^ How many workers it runs.
  , serverClosed :: !(MVar Bool)
  -- ^ Serialises 'close'; True once the C server is freed.
  , serverUse :: !(TVar Use)
  -- ^ Calls using the C server now, and whether 'close' has begun.
  , serverStopped :: !(MVar ())
  -- ^ Filled when every worker has stopped.
  , serverRelease :: IO ()
  -- ^ Frees what the binding holds once the C server is freed.
  , serverWorkerDone :: ![MVar ()]
  , serverHandler :: !(IORef Handler)
  -- ^ The handler requests go to (replaced by 'reload').
  , serverSetHandler :: Ptr Raw.Config -> IO ()
  -- ^ Sets the C handler and userdata this server was started with.
  , serverCallbacks :: !(IORef [IO ()])
  -- ^ Frees log callbacks once the server is freed.
  , serverListen :: !String
  -- ^ The address listened on, with the real port.
  }

-- | Calls in progress on a server, and whether 'close' has begun (then no
-- new call starts, and close frees the server once the count is 0).
data Use = Use !Int !Bool

-- | Runs a call on the C server, or throws if 'close' has begun. 'close'
-- waits for it to return before it frees the server.
withLive :: String -> Server -> (Ptr Raw.Server -> IO a) -> IO a
withLive call s act = orClosed s (throwIO (closedError call)) act

-- | 'withLive' with what to do instead when the server is closed.
orClosed :: Server -> IO a -> (Ptr Raw.Server -> IO a) -> IO a
orClosed s closed act = mask $ \restore -> do
  let use = serverUse s
  live <- atomically $ do
    Use n closing <- readTVar use
    if closing then pure False else True <$ writeTVar use (Use (n + 1) False)
  if not live
    then restore closed
    else
      restore (act (serverPtr s)) `finally` atomically (readTVar use >>= \(Use n c) -> writeTVar use (Use (n - 1) c))

closedError :: String -> WarpCoreError
closedError call = WarpCoreError Raw.resultInvalidState call "the server is closed"

-- | Refuses a call that waits for the server's workers when it comes from
-- inside a callback on a worker thread (an 'InCallback' handler, a log
-- sink): that worker cannot stop until the callback returns, so the call
-- would never return.
notInCallback :: String -> IO ()
notInCallback call = do
  depth <- Raw.c_warpcore_hs_gate_depth
  when (depth > 0) $
    throwIO $
      WarpCoreError Raw.resultInvalidState call $
        "called from inside a handler or log callback on a worker thread, which it would wait for; "
          ++ "call it from another thread (forkIO)"

-- | The library's version (@MAJOR.MINOR.PATCH@).
version :: String
version = unsafePerformIO (Raw.c_warpcore_version >>= peekCString)
{-# NOINLINE version #-}

-- | Starts a server. Throws 'WarpCoreError' (address in use, bad settings).
-- The program must be linked with @-threaded@.
start :: Config -> Handler -> IO Server
start cfg handler = do
  unless rtsSupportsBoundThreads $
    throwIO (userError "Network.WarpCore: the program must be linked with -threaded")
  -- Calls from the engine into the runtime stop before it goes down.
  _ <- Raw.c_warpcore_hs_gate_install
  current <- newIORef handler
  callbacks <- newIORef []
  withConfig cfg (\fresh -> atomicModifyIORef' callbacks (\cs -> (fresh ++ cs, ()))) $ \c -> do
    setBytes "warpcore_config_set_listen" (Raw.c_warpcore_hs_config_set_listen c) (B8.pack (configListen cfg))
    forM_ (configTLS cfg) $ \tls -> addTLSListener tls c (configListen cfg)
    checkWith "warpcore_config_set_workers" (Raw.c_warpcore_hs_config_set_workers c (word32OrRefused (configWorkers cfg)))
    when (configWorkerThreads cfg == BoundThreads) $
      checkWith "warpcore_config_set_external_workers" (Raw.c_warpcore_hs_config_set_external_workers c (CBool 1))
    when (configSharePort cfg) $
      checkWith "warpcore_config_set_share_port" (Raw.c_warpcore_hs_config_set_share_port c (CBool 1))
    case configDispatch cfg of
      Dispatcher -> startDispatched cfg current callbacks c
      mode -> startCallback cfg current callbacks (mode == InCallback) c

-- Makes a C config with the settings a reload may change too and runs
-- `act` with it. The log callbacks made for it are freed here if anything
-- throws (the library took none of them), and otherwise handed to `keep`
-- (to be freed with the server).
withConfig :: Config -> ([IO ()] -> IO ()) -> (Ptr Raw.Config -> IO a) -> IO a
withConfig cfg keep act = mask $ \restore -> do
  made <- newIORef []
  let freeMade = sequence_ =<< readIORef made
      remember free = modifyIORef made (free :)
  r <- restore (build remember) `onException` freeMade
  keep =<< readIORef made
  pure r
  where
    build remember = do
      cp <- alloca $ \out -> do
        check "warpcore_config_new" (Raw.c_warpcore_config_new out)
        peek out
      config <- newForeignPtr Raw.p_warpcore_config_free cp
      withForeignPtr config $ \c -> do
        forM_ (configServerName cfg) $ setBytes "warpcore_config_set_server_name" (Raw.c_warpcore_hs_config_set_server_name c)
        forM_ (configMaxBodySize cfg) $ checkWith "warpcore_config_set_max_body_size" . Raw.c_warpcore_hs_config_set_max_body_size c
        forM_ (configWholeBodyMax cfg) $ checkWith "warpcore_config_set_whole_body_max" . Raw.c_warpcore_hs_config_set_whole_body_max c
        forM_ (configMaxHeadSize cfg) $ checkWith "warpcore_config_set_max_head_size" . Raw.c_warpcore_hs_config_set_max_head_size c
        forM_ (configMaxRequestLine cfg) $ checkWith "warpcore_config_set_max_request_line" . Raw.c_warpcore_hs_config_set_max_request_line c
        forM_ (configMaxHeaderCount cfg) $ checkWith "warpcore_config_set_max_header_count" . Raw.c_warpcore_hs_config_set_max_header_count c
        forM_ (configStreamHighWater cfg) $ checkWith "warpcore_config_set_stream_high_water" . Raw.c_warpcore_hs_config_set_stream_high_water c
        forM_ (configMaxConnections cfg) $ checkWith "warpcore_config_set_max_connections" . Raw.c_warpcore_hs_config_set_max_connections c
        forM_ (configCoalesceWait cfg) $ checkWith "warpcore_config_set_coalesce_wait" . Raw.c_warpcore_hs_config_set_coalesce_wait c
        checkWith "warpcore_config_set_static_dotfiles" $
          Raw.c_warpcore_hs_config_set_static_dotfiles c (CBool (if configStaticDotfiles cfg then 1 else 0))
        -- The library moves its worker threads (and puts them back); the
        -- dispatchers move the runtime's (startDispatched).
        checkWith "warpcore_config_set_sched_batch" $
          Raw.c_warpcore_hs_config_set_sched_batch c (CBool (if schedBatch cfg then 1 else 0))
        forM_ (configFileCache cfg) $ \(fd, info) ->
          checkWith "warpcore_config_set_file_cache" (Raw.c_warpcore_hs_config_set_file_cache c fd info)
        forM_ (configTimeouts cfg) $ \(which, ms) ->
          checkWith "warpcore_config_set_timeout" (Raw.c_warpcore_hs_config_set_timeout c (timeoutCode which) (fromIntegral ms))
        forM_ (configStatic cfg) $ \(prefix, dir) ->
          BU.unsafeUseAsCStringLen prefix $ \(pp, pl) ->
            BU.unsafeUseAsCStringLen (B8.pack dir) $ \(dp, dl) ->
              checkWith "warpcore_config_add_static" $
                Raw.c_warpcore_hs_config_add_static c (castPtr pp) (fromIntegral pl) (castPtr dp) (fromIntegral dl)
        forM_ (if isJust (configAccessLog cfg) then Nothing else configAccessLogFile cfg) $ setBytes "warpcore_config_set_access_log_file" (Raw.c_warpcore_hs_config_set_access_log_file c) . B8.pack
        -- The "wrapper" callbacks are reached through the gate's C trampolines.
        forM_ (configAccessLog cfg) $ \sink -> do
          fp <- mask_ $ do
            fp <- Raw.mkAccessLogCallback $ \_ p n ->
              (B.packCStringLen (castPtr p, fromIntegral n) >>= sink) `catch` \(_ :: SomeException) -> pure ()
            fp <$ remember (freeHaskellFunPtr fp)
          checkWith "warpcore_config_set_access_log_callback" $
            Raw.c_warpcore_hs_config_set_access_log_callback c Raw.p_warpcore_hs_gated_access_log (castFunPtrToPtr fp)
        forM_ (configErrorLog cfg) $ \sink -> do
          fp <- mask_ $ do
            fp <- Raw.mkErrorLogCallback $ \_ level p n ->
              (B.packCStringLen (castPtr p, fromIntegral n) >>= sink level) `catch` \(_ :: SomeException) -> pure ()
            fp <$ remember (freeHaskellFunPtr fp)
          checkWith "warpcore_config_set_error_log" $
            Raw.c_warpcore_hs_config_set_error_log c Raw.p_warpcore_hs_gated_error_log (castFunPtrToPtr fp)
        checkWith "warpcore_config_set_proxy_protocol" $
          Raw.c_warpcore_hs_config_set_proxy_protocol c (proxyCode (configProxyProtocol cfg))
        when (isJust (configOnOpen cfg) || isJust (configOnClose cfg)) $ do
          hooks <- mask_ $ do
            open <- maybe (pure nullFunPtr) (\f -> Raw.mkConnectionOpenCallback (openHook f)) (configOnOpen cfg)
            close' <- maybe (pure nullFunPtr) (\f -> Raw.mkConnectionCloseCallback (closeHook f)) (configOnClose cfg)
            hooks <- Raw.c_warpcore_hs_hooks_new open close'
            remember (Raw.c_warpcore_hs_hooks_free hooks >> freeFun open >> freeFun close')
            when (hooks == nullPtr) $ throwIO (userError "Network.WarpCore: out of memory")
            pure hooks
          checkWith "warpcore_config_set_connection_hooks" $
            Raw.c_warpcore_hs_config_set_connection_hooks c Raw.p_warpcore_hs_gated_on_open Raw.p_warpcore_hs_gated_on_close (castPtr hooks)
        act c
    freeFun fp = when (fp /= nullFunPtr) (freeHaskellFunPtr fp)
    report e = configOnException cfg e `catch` \(_ :: SomeException) -> pure ()
    openHook f _ info = do
      keep <- try (connection info >>= f)
      case keep of
        Right True -> pure (CBool 1)
        Right False -> pure (CBool 0)
        Left (e :: SomeException) -> report e >> pure (CBool 0)
    closeHook f _ info = (connection info >>= f) `catch` report

-- | What the hooks are told, copied out of the borrowed view.
connection :: Ptr Raw.ConnectionInfo -> IO Connection
connection p = do
  Raw.ConnectionInfo (Raw.Str ip len) port worker cid <- peek p
  ipBytes <- B.packCStringLen (castPtr ip, fromIntegral len)
  pure (Connection ipBytes (fromIntegral port) (fromIntegral worker) cid)

proxyCode :: ProxyProtocol -> Word32
proxyCode ProxyProtocolNone = Raw.proxyProtocolNone
proxyCode ProxyProtocolRequired = Raw.proxyProtocolRequired
proxyCode ProxyProtocolOptional = Raw.proxyProtocolOptional

-- | An 'Int' for a @uint32_t@ the library range-checks: one outside
-- @uint32_t@ becomes 'maxBound', which the library refuses, instead of
-- wrapping into a value it would take (2^32 + 1 workers were one).
word32OrRefused :: Int -> Word32
word32OrRefused n
  | n < 0 || toInteger n > toInteger (maxBound :: Word32) = maxBound
  | otherwise = fromIntegral n

-- | An 'Int' held to @0 .. maxBound :: Word32@ (a grace longer than
-- ~49 days is the longest the library waits, not a wrapped short one).
clampWord32 :: Int -> Word32
clampWord32 n = fromInteger (max 0 (min (toInteger (maxBound :: Word32)) (toInteger n)))

setBytes :: String -> (Ptr a -> CSize -> Ptr CChar -> IO Raw.Result) -> ByteString -> IO ()
setBytes call set bs = BU.unsafeUseAsCStringLen bs $ \(p, l) -> checkWith call (set (castPtr p) (fromIntegral l))

timeoutCode :: Timeout -> Word32
timeoutCode HeaderTimeout = Raw.timeoutHeader
timeoutCode IdleTimeout = Raw.timeoutIdle
timeoutCode BodyTimeout = Raw.timeoutBody
timeoutCode WriteTimeout = Raw.timeoutWrite
timeoutCode AnswerTimeout = Raw.timeoutAnswer

-- Runs the handler for one request in the current thread and makes sure
-- the handle is released, then the body reader (after discarding what the
-- handler left of the body, as configMaximumBodyFlush says).
serve :: Config -> Handler -> Request -> Responder -> IO ()
serve cfg handler req r = do
  result <- try (handler req r)
  case result of
    Left (e :: SomeException) -> configOnException cfg e `catch` \(_ :: SomeException) -> pure ()
    Right () -> pure ()
  finishResponder r `finally` forM_ (requestBodyReader req) (finishBody (configMaximumBodyFlush cfg) expects100)
  where
    expects100 = maybe False ((== B8.pack "100-continue") . B8.map toLowerAscii) (requestHeader (B8.pack "expect") req)
    toLowerAscii c = if c >= 'A' && c <= 'Z' then toEnum (fromEnum c + 32) else c

-- Starts the C server with the configured handler.
startWith :: Ptr Raw.Config -> IO (Ptr Raw.Server)
startWith c =
  alloca $ \out -> do
    checkWith "warpcore_server_start" (Raw.c_warpcore_hs_server_start c out)
    peek out

finishStart :: Config -> IORef Handler -> IORef [IO ()] -> (Ptr Raw.Config -> IO ()) -> Ptr Raw.Server -> IO () -> IO Server
finishStart cfg current callbacks setHandler sp release = do
  port <- fromIntegral <$> Raw.c_warpcore_server_port sp
  workers <- fromIntegral <$> Raw.c_warpcore_server_workers sp
  done <-
    if configWorkerThreads cfg == BoundThreads
      then forM [0 .. workers - 1] $ \i -> do
        v <- newEmptyMVar
        _ <- forkOS (void (Raw.c_warpcore_server_run_worker sp (fromIntegral i)) `finally` putMVar v ())
        pure v
      else pure []
  closed <- newMVar False
  use <- newTVarIO (Use 0 False)
  stopped <- newEmptyMVar
  -- One thread waits in C for the workers to stop, so that 'wait' is an
  -- interruptible takeMVar, and 'close' never frees the server under a waiter.
  _ <- forkIO (void (Raw.c_warpcore_server_wait sp) `finally` putMVar stopped ())
  let listen = configListen cfg
      host = reverse (drop 1 (dropWhile (/= ':') (reverse listen)))
      -- What a reload names to keep the listener: a Unix path or descriptor
      -- as given, a TCP address with the port it got.
      kept
        | any (`isPrefixOf` listen) ["unix:", "fd://"] = listen
        | otherwise = host ++ ":" ++ show port
  pure (Server sp port workers closed use stopped release done current setHandler callbacks kept)

-- The default path: the C handler and one dispatcher thread per capability.
-- If the server does not start, the dispatchers are stopped and freed.
startDispatched :: Config -> IORef Handler -> IORef [IO ()] -> Ptr Raw.Config -> IO Server
startDispatched cfg current callbacks c = mask $ \restore -> do
  caps <- getNumCapabilities
  d <- Raw.c_warpcore_hs_dispatch_new (fromIntegral caps)
  when (d == nullPtr) $ throwIO (userError "Network.WarpCore: out of memory")
  let batch = schedBatch cfg
  when batch Raw.c_warpcore_hs_sched_batch_retain
  stopped <- forM [0 .. caps - 1] $ \i -> do
    v <- newEmptyMVar
    -- Unmasked whatever the caller's state (start runs masked in withServer's
    -- bracket): the request threads it forks inherit it, and handlers run
    -- unmasked, as Warp runs applications.
    _ <- forkOnWithUnmask i (\unmask -> unmask (dispatcher cfg current d i) `finally` putMVar v ())
    pure v
  let setHandler cc = checkWith "warpcore_config_set_handler" (Raw.c_warpcore_hs_config_set_handler cc Raw.p_warpcore_hs_handler (castPtr d))
      release = do
        Raw.c_warpcore_hs_dispatch_close d
        mapM_ takeMVar stopped
        Raw.c_warpcore_hs_dispatch_free d
        -- The threads the dispatchers moved to SCHED_BATCH go back (when
        -- no other server's dispatchers use them).
        when batch Raw.c_warpcore_hs_sched_batch_release
        sequence_ =<< readIORef callbacks
  -- Once the library started, nothing interrupts us until the Server exists
  -- (its close frees the C server; a listener handed in is then its own).
  sp <- (restore (setHandler c) >> startWith c) `onException` uninterruptibleMask_ release
  finishStart cfg current callbacks setHandler sp release

-- Takes batches from queue `i` and forks a thread per request, until the
-- queue is closed and empty.
dispatcher :: Config -> IORef Handler -> Ptr Raw.Dispatch -> Int -> IO ()
dispatcher cfg current d i = alloca $ \out -> batch >> newWaiter >>= loop out
  where
    -- The OS thread running this capability may change (after a safe call);
    -- whichever runs it after a wakeup is moved (once per thread).
    batch = when (schedBatch cfg) (void Raw.c_warpcore_hs_sched_batch)
    newWaiter = do
      mv <- newEmptyMVar
      sp <- newStablePtrPrimMVar mv
      pure (mv, sp)
    loop out w@(mv, sp) = do
      r <- Raw.c_warpcore_hs_dispatch_take d (fromIntegral i) sp (fromIntegral i) out
      case r of
        1 -> do
          peek out >>= forkAll
          -- Let the request threads run (and answer) before looking again:
          -- requests that arrive meanwhile are taken as one batch, without
          -- a wakeup each.
          yield
          loop out w
        0 -> do
          takeMVar mv
          batch
          newWaiter >>= loop out
        _ -> freeStablePtr sp
    forkAll item
      | item == nullPtr = pure ()
      | otherwise = do
          next <- Raw.itemNext item
          forkWith cfg $ do
            (req, res) <- readItem item
            r <- newResponder True res
            handler <- readIORef current
            serve cfg handler req r
          forkAll next

-- Forks a request's thread as 'configFork' says (forkIO by default).
forkWith :: Config -> IO () -> IO ()
forkWith cfg body = case configFork cfg of
  Nothing -> void (forkIO body)
  Just (Fork fork) -> fork (\unmask -> unmask body)

-- The callback paths: a "wrapper" FunPtr that forks or runs the handler.
startCallback :: Config -> IORef Handler -> IORef [IO ()] -> Bool -> Ptr Raw.Config -> IO Server
startCallback cfg current callbacks inline c = do
  let callback _ view res =
        ( do
            req0 <- readView view
            -- A body that streams: its reader can only be taken now.
            follows <- Raw.peekBodyFollows view
            req <-
              if follows
                then (\b -> req0 {requestBodyReader = Just b}) <$> takeBodyReader res
                else pure req0
            -- Reading a streamed body waits for this worker thread: that
            -- request runs on a green thread even InCallback.
            let here = inline && not follows
            r <- if here then newInlineResponder res else newResponder False res
            handler <- readIORef current
            if here
              then serve cfg handler req r
              else forkWith cfg (serve cfg handler req r)
        )
          `catch` \(e :: SomeException) -> configOnException cfg e
  mask $ \restore -> do
    fp <- Raw.mkHandlerCallback callback
    -- The engine calls the wrapper through the gate's C trampoline.
    let setHandler cc =
          checkWith "warpcore_config_set_handler" $
            Raw.c_warpcore_hs_config_set_handler cc Raw.p_warpcore_hs_gated_handler (castFunPtrToPtr fp)
        release = freeHaskellFunPtr fp >> (sequence_ =<< readIORef callbacks)
    sp <- (restore (setHandler c) >> startWith c) `onException` release
    finishStart cfg current callbacks setHandler sp release

-- | The address of each listener the server has, in order (@127.0.0.1:39211@,
-- @[::1]:80@, @unix:/run/app.sock@; a socket handed in as @fd://N@ shows its
-- own address). Empty once the server is closed.
serverListeners :: Server -> IO [String]
serverListeners s = orClosed s (pure []) $ \sp -> do
  n <- Raw.c_warpcore_server_listener_count sp
  forM [0 .. n - 1] (address sp 64)
  where
    -- A text longer than the buffer: again with its size (unsafe calls, so
    -- the message read on failure is this call's).
    address sp cap i = do
      r <- allocaBytes cap $ \buf -> alloca $ \needed -> do
        code <- Raw.c_warpcore_server_listener_address sp i buf (fromIntegral cap) needed
        if code == Raw.resultOk
          then Right . Right <$> peekCString buf
          else if code == Raw.resultBufferTooSmall
            then Right . Left . fromIntegral <$> peek needed
            else pure (Left code)
      case r of
        Right (Right text) -> pure text
        Right (Left size) -> address sp (size + 1) i
        Left code -> throwResult "warpcore_server_listener_address" code

-- | Shuts the server down gracefully: stops accepting, lets requests already
-- received be answered for up to @grace@ milliseconds (at most 2^32 - 1; a
-- negative grace is 0), and returns when every worker has stopped. Harmless
-- to repeat, and after 'close'. From inside an 'InCallback' handler (or a
-- log sink) it throws 'WarpCoreError' ('Raw.resultInvalidState'): its
-- worker could not stop until the handler returned; fork a thread to call it.
shutdown :: Server -> Int -> IO ()
shutdown s grace = do
  notInCallback "Network.WarpCore.shutdown"
  orClosed s (pure ()) $ \sp ->
    checkWith "warpcore_server_shutdown" (Raw.c_warpcore_hs_server_shutdown sp (clampWord32 grace))

-- | Waits until the server has stopped (another thread called 'shutdown').
-- Interruptible. Refused inside an 'InCallback' handler, as 'shutdown' is.
wait :: Server -> IO ()
wait s = do
  notInCallback "Network.WarpCore.wait"
  readMVar (serverStopped s)

-- | Frees the server, shutting it down without grace if it still runs, then
-- the binding's dispatchers and callbacks. Calls in progress on other
-- threads ('stats', a graceful 'shutdown', …) finish first; later ones throw.
-- Harmless to repeat. Not interruptible: an asynchronous exception (a
-- 'System.Timeout.timeout', 'killThread') arrives once the server is freed.
-- Refused inside an 'InCallback' handler, as 'shutdown' is.
close :: Server -> IO ()
close s = do
  notInCallback "Network.WarpCore.close"
  uninterruptibleMask_ $ modifyMVar_ (serverClosed s) $ \closed -> do
    unless closed $ do
      let use = serverUse s
      atomically $ readTVar use >>= \(Use n _) -> writeTVar use (Use n True)
      -- Stop the workers (and our threads inside run_worker or wait) before
      -- freeing; a graceful shutdown in progress then ends too.
      _ <- Raw.c_warpcore_server_shutdown (serverPtr s) 0
      atomically $ readTVar use >>= \(Use n _) -> when (n > 0) retry
      readMVar (serverStopped s)
      mapM_ readMVar (serverWorkerDone s)
      Raw.c_warpcore_server_free (serverPtr s)
      serverRelease s
    pure True

-- | Starts a server for the duration of an action; it is shut down (no grace)
-- and freed when the action ends, however it ends.
withServer :: Config -> Handler -> (Server -> IO a) -> IO a
withServer cfg handler = bracket (start cfg handler) close

-- | Starts a server and serves until it is shut down ('shutdown' from
-- another thread given the server by @ready@) or this thread is killed.
run :: Config -> Handler -> (Server -> IO ()) -> IO ()
run cfg handler ready = withServer cfg handler $ \s -> ready s >> wait s

-- | Applies new settings (static mounts included) and a new handler to
-- requests read from now on; requests in flight finish with what they
-- started with. A refused reload (a missing static directory, say) throws
-- 'WarpCoreError' and leaves the old handler and settings in place. The listen
-- address, worker count, dispatch and worker threads cannot change (those
-- fields of the new config are ignored, except that a different address or
-- worker count is refused by the library).
--
-- Refused inside an 'InCallback' handler (the library waits for every
-- worker, its own included) and on a closed server.
reload :: Server -> Config -> Handler -> IO ()
reload s cfg handler = do
  notInCallback "Network.WarpCore.reload"
  withLive "Network.WarpCore.reload" s $ \sp ->
    withConfig cfg (\fresh -> atomicModifyIORef' (serverCallbacks s) (\cs -> (fresh ++ cs, ()))) $ \c -> do
      setBytes "warpcore_config_set_listen" (Raw.c_warpcore_hs_config_set_listen c) (B8.pack (serverListen s))
      forM_ (configTLS cfg) $ \tls -> addTLSListener tls c (serverListen s)
      checkWith "warpcore_config_set_workers" (Raw.c_warpcore_hs_config_set_workers c (fromIntegral (serverWorkers s)))
      serverSetHandler s c
      -- The handler is swapped first: a request read after the reload must not
      -- reach the old one. (One read just before it may reach the new one.)
      old <- atomicModifyIORef' (serverHandler s) (\h -> (handler, h))
      checkWith "warpcore_server_reload" (Raw.c_warpcore_hs_server_reload sp c)
        `onException` writeIORef (serverHandler s) old

-- | The server's counters. Throws on a closed server.
stats :: Server -> IO Raw.Stats
stats s = withLive "Network.WarpCore.stats" s $ \sp -> Raw.allocaSized $ \out -> do
  checkWith "warpcore_server_stats" (Raw.c_warpcore_hs_server_stats sp out)
  peek out

-- | The file caches' hit and miss counts. Throws on a closed server.
fileCacheStats :: Server -> IO Raw.FileCacheStats
fileCacheStats s = withLive "Network.WarpCore.fileCacheStats" s $ \sp -> Raw.allocaSized $ \out -> do
  checkWith "warpcore_server_file_cache_stats" (Raw.c_warpcore_hs_server_file_cache_stats sp out)
  peek out

-- | What the last shutdown did (zeros before one finished). Read it before
-- 'close': it throws on a closed server.
shutdownReport :: Server -> IO Raw.ShutdownReport
shutdownReport s = withLive "Network.WarpCore.shutdownReport" s $ \sp -> Raw.allocaSized $ \out -> do
  checkWith "warpcore_server_shutdown_report" (Raw.c_warpcore_hs_server_shutdown_report sp out)
  peek out

-- | Reopens the access-log file (after log rotation moved it away). Throws
-- on a closed server.
reopenLogs :: Server -> IO ()
reopenLogs s = withLive "Network.WarpCore.reopenLogs" s $ \sp ->
  checkWith "warpcore_server_reopen_logs" (Raw.c_warpcore_hs_server_reopen_logs sp)
