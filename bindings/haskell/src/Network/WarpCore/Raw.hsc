{-# LANGUAGE ForeignFunctionInterface #-}
-- | The C API of libwarpcore (@include/warpcore.h@), imported as it is.
--
-- Every function of the header has a foreign import here under its C name
-- with a @c_@ prefix. Calls that may block or call back into Haskell are
-- @safe@ (starting, shutting down, waiting for and running a server, writing
-- to a stream, which may wait for the client); cheap ones are @unsafe@. The
-- respond calls come in both kinds: @safe@ where the caller cannot rule out a
-- short wait (another thread's handler still running), @unsafe@ (suffix
-- @_unsafe@) for the binding's dispatcher path, where that wait is bounded by
-- C code that never needs the GHC runtime.
--
-- The request view is read with 'Storable' ('peek'); its bytes are borrowed
-- and valid only during the handler call.
--
-- The second half imports the binding's own C helpers (@cbits/warpcore_hs.c@):
-- a handler written in C that queues each request for a Haskell dispatcher
-- thread, and release callbacks for zero-copy bodies.
module Network.WarpCore.Raw
  ( -- * Opaque handles
    Config
  , Server
  , Response
  , Body
  , Upgraded
  , WebSocket
  , TLS
    -- * Plain structs
  , Str (..)
  , Header (..)
  , RequestView (..)
  , ConnectionInfo (..)
  , peekBodyFollows
  , Stats (..)
  , FileCacheStats (..)
  , ShutdownReport (..)
  , Sized (..)
  , allocaSized
    -- * Result codes
  , Result
  , resultOk
  , resultInvalidArgument
  , resultNullArgument
  , resultInvalidAddress
  , resultAddressInUse
  , resultIoError
  , resultShuttingDown
  , resultInvalidState
  , resultAlreadyAnswered
  , resultClosed
  , resultInvalidStatus
  , resultInvalidHeader
  , resultPanic
  , resultLengthMismatch
  , resultWouldBlock
  , resultBufferTooSmall
  , resultTls
    -- * TLS client certificates
  , tlsClientAuthNone
  , tlsClientAuthOptional
  , tlsClientAuthRequired
    -- * Timeouts
  , timeoutHeader
  , timeoutIdle
  , timeoutBody
  , timeoutWrite
  , timeoutAnswer
    -- * PROXY protocol modes
  , proxyProtocolNone
  , proxyProtocolRequired
  , proxyProtocolOptional
    -- * Log levels
  , logLevelError
  , logLevelWarning
  , logLevelInfo
    -- * Upgrade and WebSocket events, message kinds
  , upgradeEventReadable
  , upgradeEventWritable
  , upgradeEventClosed
  , upgradeEventDraining
  , upgradeEventQuiet
  , websocketEventMessage
  , websocketEventWritable
  , websocketEventClosed
  , websocketEventDraining
  , websocketKindText
  , websocketKindBinary
  , websocketKindClose
    -- * Callbacks
  , HandlerCallback
  , ReleaseCallback
  , AccessLogCallback
  , ErrorLogCallback
  , mkHandlerCallback
  , ConnectionOpenCallback
  , ConnectionCloseCallback
  , mkConnectionOpenCallback
  , mkConnectionCloseCallback
  , c_warpcore_config_set_proxy_protocol
  , c_warpcore_config_set_listener_proxy_protocol
  , c_warpcore_config_set_connection_hooks
  , c_warpcore_response_set_reason
  , c_warpcore_response_pause_timeout
  , CloseCallback
  , mkCloseCallback
  , c_warpcore_response_on_close
  , c_warpcore_hs_config_set_proxy_protocol
  , c_warpcore_hs_config_set_listener_proxy_protocol
  , c_warpcore_hs_config_set_connection_hooks
  , c_warpcore_hs_response_set_reason
  , c_warpcore_hs_response_pause_timeout
  , HsHooks
  , c_warpcore_hs_hooks_new
  , c_warpcore_hs_hooks_free
  , p_warpcore_hs_gated_on_open
  , p_warpcore_hs_gated_on_close
  , mkAccessLogCallback
  , mkErrorLogCallback
  , UpgradeCallback
  , WebSocketCallback
  , mkUpgradeCallback
  , mkWebSocketCallback
    -- * Config
  , c_warpcore_config_new
  , c_warpcore_config_free
  , p_warpcore_config_free
  , c_warpcore_config_set_listen
  , c_warpcore_config_set_workers
  , c_warpcore_config_set_external_workers
  , c_warpcore_config_set_share_port
  , c_warpcore_config_add_listener
  , c_warpcore_config_clear_listeners
  , c_warpcore_config_set_unix_socket_mode
  , c_warpcore_config_add_systemd_listeners
    -- * TLS
  , c_warpcore_tls_new
  , c_warpcore_tls_free
  , c_warpcore_tls_add_cert_files
  , c_warpcore_tls_add_cert_pem
  , c_warpcore_tls_set_alpn
  , c_warpcore_tls_set_client_auth_pem
  , c_warpcore_tls_set_client_auth_file
  , c_warpcore_tls_set_session_tickets
  , c_warpcore_tls_set_ktls
  , c_warpcore_tls_set_min_version
  , c_warpcore_tls_set_require_sni_match
  , c_warpcore_config_add_tls_listener
  , c_warpcore_hs_tls_add_cert_files
  , c_warpcore_hs_tls_add_cert_pem
  , c_warpcore_hs_tls_set_client_auth_pem
  , c_warpcore_hs_tls_set_client_auth_file
  , c_warpcore_hs_config_add_tls_listener
  , peekTlsVersion
  , TlsView (..)
  , peekTlsView
  , c_warpcore_config_set_handler
  , AnsweringCallback
  , c_warpcore_config_set_answering_handler
  , c_warpcore_config_set_server_name
  , c_warpcore_config_set_max_body_size
  , c_warpcore_config_set_whole_body_max
  , c_warpcore_config_set_max_head_size
  , c_warpcore_config_set_max_request_line
  , c_warpcore_config_set_max_header_count
  , c_warpcore_config_set_stream_high_water
  , c_warpcore_config_set_timeout
  , c_warpcore_config_set_max_connections
  , c_warpcore_config_set_backlog
  , c_warpcore_config_set_coalesce_wait
  , c_warpcore_config_set_access_log_file
  , c_warpcore_config_set_access_log_callback
  , c_warpcore_config_set_error_log
  , c_warpcore_config_add_static
  , c_warpcore_config_set_file_cache
  , c_warpcore_config_set_static_dotfiles
  , c_warpcore_config_set_sched_batch
  , c_warpcore_thread_set_sched_batch
  , c_warpcore_config_set_client_fin_ends_request
    -- * Responses
  , c_warpcore_respond
  , c_warpcore_respond_unsafe
  , c_warpcore_respond_buffer
  , c_warpcore_respond_buffer_unsafe
  , c_warpcore_respond_file
  , Prepared
  , c_warpcore_prepared_new
  , c_warpcore_prepared_free
  , c_warpcore_respond_prepared
  , c_warpcore_response_start
  , c_warpcore_response_start_unsafe
  , c_warpcore_response_write
  , c_warpcore_response_write_buffer
  , c_warpcore_response_end
  , c_warpcore_response_abort
    -- * Request bodies that stream
  , c_warpcore_response_body
  , c_warpcore_body_read
  , c_warpcore_body_try_read
  , BodyReadyCallback
  , mkBodyReadyCallback
  , c_warpcore_body_on_readable
  , c_warpcore_body_free
    -- * Upgraded connections
  , c_warpcore_response_upgrade
  , c_warpcore_response_take_over
  , c_warpcore_upgraded_read
  , c_warpcore_upgraded_write
  , c_warpcore_upgraded_write_buffer
  , c_warpcore_upgraded_shutdown_write
  , c_warpcore_upgraded_close
  , c_warpcore_upgraded_set_nonblocking
  , c_warpcore_upgraded_set_idle_timeout
  , c_warpcore_upgraded_set_quiet_notice
  , c_warpcore_upgraded_draining
  , c_warpcore_upgraded_free
    -- * WebSockets
  , c_warpcore_websocket_accept
  , c_warpcore_websocket_recv
  , c_warpcore_websocket_send
  , c_warpcore_websocket_close
  , c_warpcore_websocket_set_nonblocking
  , c_warpcore_websocket_set_idle_timeout
  , c_warpcore_websocket_draining
  , c_warpcore_websocket_free
    -- * Results and version
  , c_warpcore_result_str
  , c_warpcore_last_error_message
  , c_warpcore_version
    -- * Server
  , c_warpcore_server_start
  , c_warpcore_server_port
  , c_warpcore_server_workers
  , c_warpcore_server_listener_count
  , c_warpcore_server_listener_address
  , c_warpcore_server_run_worker
  , c_warpcore_server_shutdown
  , c_warpcore_server_wait
  , c_warpcore_server_free
  , c_warpcore_server_stats
  , c_warpcore_server_file_cache_stats
  , c_warpcore_server_shutdown_report
  , c_warpcore_server_reload
  , c_warpcore_server_reopen_logs
    -- * The binding's C dispatcher (cbits)
  , Dispatch
  , Item
  , c_warpcore_hs_dispatch_new
  , c_warpcore_hs_dispatch_close
  , c_warpcore_hs_sched_batch
  , c_warpcore_hs_dispatch_free
  , c_warpcore_hs_dispatch_take
  , c_warpcore_hs_item_free
  , p_warpcore_hs_item_free
  , p_warpcore_hs_handler
  , p_warpcore_hs_release_stable
  , p_warpcore_hs_release_free
  , c_warpcore_hs_sched_batch_retain
  , c_warpcore_hs_sched_batch_release
    -- * Sockets the program opened (cbits)
  , c_warpcore_hs_dup_cloexec
  , c_warpcore_hs_socket_listens
    -- * The gate in front of calls into the runtime (cbits)
  , c_warpcore_hs_gate_install
  , c_warpcore_hs_gate_close
  , c_warpcore_hs_gate_depth
  , p_warpcore_hs_gated_handler
  , p_warpcore_hs_gated_access_log
  , p_warpcore_hs_gated_error_log
    -- * Calls that keep their error message (cbits)
  , messageSize
  , c_warpcore_hs_config_set_listen
  , c_warpcore_hs_config_set_workers
  , c_warpcore_hs_config_set_external_workers
  , c_warpcore_hs_config_set_share_port
  , c_warpcore_hs_config_set_handler
  , c_warpcore_hs_config_set_server_name
  , c_warpcore_hs_config_set_max_body_size
  , c_warpcore_hs_config_set_whole_body_max
  , c_warpcore_hs_config_set_max_head_size
  , c_warpcore_hs_config_set_max_request_line
  , c_warpcore_hs_config_set_max_header_count
  , c_warpcore_hs_config_set_stream_high_water
  , c_warpcore_hs_config_set_coalesce_wait
  , c_warpcore_hs_config_set_max_connections
  , c_warpcore_hs_config_set_static_dotfiles
  , c_warpcore_hs_config_set_sched_batch
  , c_warpcore_hs_config_set_access_log_file
  , c_warpcore_hs_config_set_access_log_callback
  , c_warpcore_hs_config_set_error_log
  , c_warpcore_hs_config_set_timeout
  , c_warpcore_hs_config_add_static
  , c_warpcore_hs_config_set_file_cache
  , c_warpcore_hs_config_add_listener
  , c_warpcore_hs_config_clear_listeners
  , c_warpcore_hs_config_set_unix_socket_mode
  , c_warpcore_hs_config_add_systemd_listeners
  , c_warpcore_hs_respond
  , c_warpcore_hs_respond_unsafe
  , c_warpcore_hs_respond_buffer
  , c_warpcore_hs_respond_buffer_unsafe
  , c_warpcore_hs_respond_file
  , c_warpcore_hs_response_start
  , c_warpcore_hs_response_start_unsafe
  , c_warpcore_hs_response_write
  , c_warpcore_hs_response_write_buffer
  , c_warpcore_hs_response_end
  , c_warpcore_hs_response_abort
  , c_warpcore_hs_response_body
  , c_warpcore_hs_body_read
  , c_warpcore_hs_response_upgrade
  , c_warpcore_hs_response_take_over
  , c_warpcore_hs_upgraded_read
  , c_warpcore_hs_upgraded_write
  , c_warpcore_hs_upgraded_write_buffer
  , c_warpcore_hs_upgraded_shutdown_write
  , c_warpcore_hs_upgraded_close
  , c_warpcore_hs_upgraded_set_idle_timeout
  , c_warpcore_hs_server_start
  , c_warpcore_hs_server_run_worker
  , c_warpcore_hs_server_shutdown
  , c_warpcore_hs_server_reload
  , c_warpcore_hs_server_stats
  , c_warpcore_hs_server_file_cache_stats
  , c_warpcore_hs_server_shutdown_report
  , c_warpcore_hs_server_reopen_logs
  , c_warpcore_hs_server_listener_address
  , itemNext
  , itemResponse
  , itemBody
  , itemData
  , itemDataLen
  , itemRequest
  ) where

import Data.Int (Int64)
import Data.Word (Word16, Word32, Word64, Word8)
import Foreign.C.String (CString)
import Foreign.C.Types (CBool (..), CChar, CInt (..), CSize (..))
import Foreign.Marshal.Alloc (alloca)
import Foreign.Marshal.Utils (fillBytes)
import Foreign.Ptr (FunPtr, Ptr, nullPtr, plusPtr)
import Foreign.StablePtr (StablePtr)
import Foreign.Storable (Storable (..))

#include "warpcore.h"
#include "warpcore_hs.h"

-- | @warpcore_config@: made by 'c_warpcore_config_new', freed by 'c_warpcore_config_free'.
data Config

-- | @warpcore_server@: made by 'c_warpcore_server_start', freed by 'c_warpcore_server_free'.
data Server

-- | @warpcore_tls@: a TLS listener's setup, made by 'c_warpcore_tls_new',
-- freed by 'c_warpcore_tls_free' (a config keeps its own copy).
data TLS

-- | @warpcore_response@: see the lifetime rules in the header.
data Response

-- | @warpcore_body@: the reader of a request body that streams, made by
-- 'c_warpcore_response_body' (inside the handler call only), freed by
-- 'c_warpcore_body_free'; read from any thread, but it waits for bytes only
-- off the library's worker threads (see the header).
data Body

-- | @warpcore_upgraded@: a connection that switched protocols, made by
-- 'c_warpcore_response_upgrade' or 'c_warpcore_response_take_over', freed by
-- 'c_warpcore_upgraded_free' (which closes it). A token: calls on a freed
-- one return 'resultInvalidArgument'. Reads and writes wait off the
-- library's worker threads (so they are @safe@ imports).
data Upgraded

-- | @warpcore_websocket@: made by 'c_warpcore_websocket_accept', freed by
-- 'c_warpcore_websocket_free'; a token like 'Upgraded'.
data WebSocket

-- | @warpcore_prepared@: made by 'c_warpcore_prepared_new', freed by
-- 'c_warpcore_prepared_free'; immutable, usable from any thread.
data Prepared

-- | @warpcore_str@: @len@ bytes at @ptr@, no NUL.
data Str = Str {strPtr :: !(Ptr Word8), strLen :: !CSize}
  deriving (Eq, Show)

instance Storable Str where
  sizeOf _ = #{size warpcore_str}
  alignment _ = #{alignment warpcore_str}
  peek p = Str <$> #{peek warpcore_str, ptr} p <*> #{peek warpcore_str, len} p
  poke p (Str ptr len) = #{poke warpcore_str, ptr} p ptr >> #{poke warpcore_str, len} p len

-- | @warpcore_connection_info@: what the connection hooks are told
-- (borrowed during the callback).
data ConnectionInfo = ConnectionInfo
  { connInfoPeerIp :: !Str
  , connInfoPeerPort :: !Word16
  , connInfoWorker :: !Word32
  , connInfoId :: !Word64
  }
  deriving (Eq, Show)

instance Storable ConnectionInfo where
  sizeOf _ = #{size warpcore_connection_info}
  alignment _ = #{alignment warpcore_connection_info}
  peek p =
    ConnectionInfo
      <$> #{peek warpcore_connection_info, peer_ip} p
      <*> #{peek warpcore_connection_info, peer_port} p
      <*> #{peek warpcore_connection_info, worker_index} p
      <*> #{peek warpcore_connection_info, id} p
  poke _ _ = ioError (userError "warpcore_connection_info is read only")

-- | @warpcore_header@.
data Header = Header {headerName :: !Str, headerValue :: !Str}
  deriving (Eq, Show)

instance Storable Header where
  sizeOf _ = #{size warpcore_header}
  alignment _ = #{alignment warpcore_header}
  peek p = Header <$> #{peek warpcore_header, name} p <*> #{peek warpcore_header, value} p
  poke p (Header n v) = #{poke warpcore_header, name} p n >> #{poke warpcore_header, value} p v

-- | @warpcore_request@, the borrowed request view (pointers into the
-- library's buffers, valid during the handler call only).
data RequestView = RequestView
  { viewMethod :: !Str
  , viewTarget :: !Str
  , viewPath :: !Str
  , viewQuery :: !Str
  , viewHeaders :: !(Ptr Header)
  , viewHeaderCount :: !CSize
  , viewBody :: !Str
  , viewPeerIp :: !Str
  , viewPeerPort :: !Word16
  , viewVersionMajor :: !Word8
  , viewVersionMinor :: !Word8
  , viewWorkerIndex :: !Word32
  , viewBodyFollows :: !Bool
  -- ^ The body streams: read it through 'c_warpcore_response_body' (added
  -- in 0.2 at the struct's end).
  }
  deriving (Eq, Show)

instance Storable RequestView where
  sizeOf _ = #{size warpcore_request}
  alignment _ = #{alignment warpcore_request}
  peek p =
    RequestView
      <$> #{peek warpcore_request, method} p
      <*> #{peek warpcore_request, target} p
      <*> #{peek warpcore_request, path} p
      <*> #{peek warpcore_request, query} p
      <*> #{peek warpcore_request, headers} p
      <*> #{peek warpcore_request, header_count} p
      <*> #{peek warpcore_request, body} p
      <*> #{peek warpcore_request, peer_ip} p
      <*> #{peek warpcore_request, peer_port} p
      <*> #{peek warpcore_request, version_major} p
      <*> #{peek warpcore_request, version_minor} p
      <*> #{peek warpcore_request, worker_index} p
      <*> ((/= (0 :: CBool)) <$> #{peek warpcore_request, body_follows} p)
  poke p v = do
    #{poke warpcore_request, method} p (viewMethod v)
    #{poke warpcore_request, target} p (viewTarget v)
    #{poke warpcore_request, path} p (viewPath v)
    #{poke warpcore_request, query} p (viewQuery v)
    #{poke warpcore_request, headers} p (viewHeaders v)
    #{poke warpcore_request, header_count} p (viewHeaderCount v)
    #{poke warpcore_request, body} p (viewBody v)
    #{poke warpcore_request, peer_ip} p (viewPeerIp v)
    #{poke warpcore_request, peer_port} p (viewPeerPort v)
    #{poke warpcore_request, version_major} p (viewVersionMajor v)
    #{poke warpcore_request, version_minor} p (viewVersionMinor v)
    #{poke warpcore_request, worker_index} p (viewWorkerIndex v)
    #{poke warpcore_request, body_follows} p (CBool (if viewBodyFollows v then 1 else 0))

-- | The view's @body_follows@ alone (without peeking the whole view).
peekBodyFollows :: Ptr RequestView -> IO Bool
peekBodyFollows p = (/= (0 :: CBool)) <$> #{peek warpcore_request, body_follows} p

-- | The structs a program allocates and the library fills ('Stats',
-- 'FileCacheStats', 'ShutdownReport') start with @size_t size@: the size of
-- the struct as this binding was compiled with it (the header's
-- @WARPCORE_*_INIT@ macros). The library writes only the fields that fit in
-- it, so a newer library never overruns it, and sets it to the bytes it
-- wrote. The Haskell records leave it out: 'peek' reads the counters only.
class Storable a => Sized a where
  -- | Writes the struct's own size to its leading @size@ field.
  pokeSize :: Ptr a -> IO ()

-- | 'alloca' for a 'Sized' struct: zeroed, with its @size@ set, ready for
-- the library to fill.
allocaSized :: Sized a => (Ptr a -> IO b) -> IO b
allocaSized k = alloca $ \p -> do
  fillBytes p 0 (sizeOfPtr p)
  pokeSize p
  k p
  where
    sizeOfPtr :: Storable s => Ptr s -> Int
    sizeOfPtr p = sizeOf (unPtr p)
    unPtr :: Ptr s -> s
    unPtr _ = undefined

-- | @warpcore_stats@: a server's counters (@warpcore_server_stats@). 'Sized'.
data Stats = Stats
  { statsConnectionsAccepted :: !Word64
  , statsConnectionsActive :: !Word64
  , statsConnectionsTimedOut :: !Word64
  , statsRequests :: !Word64
  , statsResponses1xx :: !Word64
  , statsResponses2xx :: !Word64
  , statsResponses3xx :: !Word64
  , statsResponses4xx :: !Word64
  , statsResponses5xx :: !Word64
  , statsBytesIn :: !Word64
  , statsBytesOut :: !Word64
  , statsParseErrors :: !Word64
  , statsFdCacheHits :: !Word64
  , statsFdCacheMisses :: !Word64
  , statsInfoCacheHits :: !Word64
  , statsInfoCacheMisses :: !Word64
  , statsCoalesceNaps :: !Word64
  , statsUpgrades :: !Word64
  -- ^ Connections that switched protocols (upgrade, take-over, WebSocket);
  -- 0 from a library older than the field.
  }
  deriving (Eq, Show)

instance Storable Stats where
  sizeOf _ = #{size warpcore_stats}
  alignment _ = #{alignment warpcore_stats}
  peek p =
    Stats
      <$> #{peek warpcore_stats, connections_accepted} p
      <*> #{peek warpcore_stats, connections_active} p
      <*> #{peek warpcore_stats, connections_timed_out} p
      <*> #{peek warpcore_stats, requests} p
      <*> #{peek warpcore_stats, responses_1xx} p
      <*> #{peek warpcore_stats, responses_2xx} p
      <*> #{peek warpcore_stats, responses_3xx} p
      <*> #{peek warpcore_stats, responses_4xx} p
      <*> #{peek warpcore_stats, responses_5xx} p
      <*> #{peek warpcore_stats, bytes_in} p
      <*> #{peek warpcore_stats, bytes_out} p
      <*> #{peek warpcore_stats, parse_errors} p
      <*> #{peek warpcore_stats, fd_cache_hits} p
      <*> #{peek warpcore_stats, fd_cache_misses} p
      <*> #{peek warpcore_stats, info_cache_hits} p
      <*> #{peek warpcore_stats, info_cache_misses} p
      <*> #{peek warpcore_stats, coalesce_naps} p
      <*> #{peek warpcore_stats, upgrades} p
  poke _ _ = ioError (userError "warpcore_stats is written by the library only")

instance Sized Stats where
  pokeSize p = #{poke warpcore_stats, size} p (#{size warpcore_stats} :: CSize)

-- | @warpcore_file_cache_stats@. 'Sized'.
data FileCacheStats = FileCacheStats
  { fileInfoHits :: !Word64
  , fileInfoMisses :: !Word64
  , fileFdHits :: !Word64
  , fileFdMisses :: !Word64
  }
  deriving (Eq, Show)

instance Storable FileCacheStats where
  sizeOf _ = #{size warpcore_file_cache_stats}
  alignment _ = #{alignment warpcore_file_cache_stats}
  peek p =
    FileCacheStats
      <$> #{peek warpcore_file_cache_stats, info_hits} p
      <*> #{peek warpcore_file_cache_stats, info_misses} p
      <*> #{peek warpcore_file_cache_stats, fd_hits} p
      <*> #{peek warpcore_file_cache_stats, fd_misses} p
  poke _ _ = ioError (userError "warpcore_file_cache_stats is written by the library only")

instance Sized FileCacheStats where
  pokeSize p = #{poke warpcore_file_cache_stats, size} p (#{size warpcore_file_cache_stats} :: CSize)

-- | @warpcore_shutdown_report@. 'Sized'.
data ShutdownReport = ShutdownReport
  { reportRequestsFinished :: !Word64
  , reportConnectionsCut :: !Word64
  }
  deriving (Eq, Show)

instance Storable ShutdownReport where
  sizeOf _ = #{size warpcore_shutdown_report}
  alignment _ = #{alignment warpcore_shutdown_report}
  peek p =
    ShutdownReport
      <$> #{peek warpcore_shutdown_report, requests_finished} p
      <*> #{peek warpcore_shutdown_report, connections_cut} p
  poke _ _ = ioError (userError "warpcore_shutdown_report is written by the library only")

instance Sized ShutdownReport where
  pokeSize p = #{poke warpcore_shutdown_report, size} p (#{size warpcore_shutdown_report} :: CSize)

-- | @warpcore_result@ (a @uint32_t@).
type Result = Word32

resultOk, resultInvalidArgument, resultNullArgument, resultInvalidAddress,
  resultAddressInUse, resultIoError, resultShuttingDown, resultInvalidState,
  resultAlreadyAnswered, resultClosed, resultInvalidStatus, resultInvalidHeader,
  resultPanic, resultLengthMismatch, resultWouldBlock, resultBufferTooSmall :: Result
resultOk = #{const WARPCORE_RESULT_OK}
resultInvalidArgument = #{const WARPCORE_RESULT_INVALID_ARGUMENT}
resultNullArgument = #{const WARPCORE_RESULT_NULL_ARGUMENT}
resultInvalidAddress = #{const WARPCORE_RESULT_INVALID_ADDRESS}
resultAddressInUse = #{const WARPCORE_RESULT_ADDRESS_IN_USE}
resultIoError = #{const WARPCORE_RESULT_IO_ERROR}
resultShuttingDown = #{const WARPCORE_RESULT_SHUTTING_DOWN}
resultInvalidState = #{const WARPCORE_RESULT_INVALID_STATE}
resultAlreadyAnswered = #{const WARPCORE_RESULT_ALREADY_ANSWERED}
resultClosed = #{const WARPCORE_RESULT_CLOSED}
resultInvalidStatus = #{const WARPCORE_RESULT_INVALID_STATUS}
resultInvalidHeader = #{const WARPCORE_RESULT_INVALID_HEADER}
resultPanic = #{const WARPCORE_RESULT_PANIC}
resultLengthMismatch = #{const WARPCORE_RESULT_LENGTH_MISMATCH}
-- | A body read on a worker thread found nothing yet (it never waits there).
resultWouldBlock = #{const WARPCORE_RESULT_WOULD_BLOCK}
-- | A WebSocket message is longer than the buffer given; its length was
-- written and it stays first in line (@warpcore_websocket_recv@).
resultBufferTooSmall = #{const WARPCORE_RESULT_BUFFER_TOO_SMALL}

proxyProtocolNone, proxyProtocolRequired, proxyProtocolOptional :: Word32
proxyProtocolNone = #{const WARPCORE_PROXY_PROTOCOL_NONE}
proxyProtocolRequired = #{const WARPCORE_PROXY_PROTOCOL_REQUIRED}
proxyProtocolOptional = #{const WARPCORE_PROXY_PROTOCOL_OPTIONAL}
-- | A certificate, key or other TLS setting is unusable.
resultTls :: Result
resultTls = #{const WARPCORE_RESULT_TLS}

tlsClientAuthNone, tlsClientAuthOptional, tlsClientAuthRequired :: Word32
tlsClientAuthNone = #{const WARPCORE_TLS_CLIENT_AUTH_NONE}
tlsClientAuthOptional = #{const WARPCORE_TLS_CLIENT_AUTH_OPTIONAL}
tlsClientAuthRequired = #{const WARPCORE_TLS_CLIENT_AUTH_REQUIRED}

-- | The view's @tls_version@ alone: 0 on a plain connection, @0x0303@ or
-- @0x0304@ on a TLS one (added in 0.3 at the struct's end).
peekTlsVersion :: Ptr RequestView -> IO Word16
peekTlsVersion p = #{peek warpcore_request, tls_version} p

-- | The view's TLS fields (added in 0.3 at the struct's end), borrowed as
-- the rest of the view.
data TlsView = TlsView
  { tlsViewResumed :: !Bool
  , tlsViewVersion :: !Word16
  , tlsViewCipher :: !Word16
  , tlsViewSni :: !Str
  , tlsViewAlpn :: !Str
  , tlsViewPeerCerts :: ![Str]
  -- ^ The client's chain (DER), its own certificate first; empty without one.
  }
  deriving (Eq, Show)

-- | The view's TLS fields; 'Nothing' on a plain connection.
peekTlsView :: Ptr RequestView -> IO (Maybe TlsView)
peekTlsView p = do
  tls <- #{peek warpcore_request, tls} p
  if tls == (0 :: CBool)
    then pure Nothing
    else do
      certs <- #{peek warpcore_request, tls_peer_certs} p
      count <- #{peek warpcore_request, tls_peer_cert_count} p :: IO CSize
      chain <- if certs == nullPtr then pure [] else mapM (peekElemOff certs) [0 .. fromIntegral count - 1]
      v <-
        TlsView
          <$> ((/= (0 :: CBool)) <$> #{peek warpcore_request, tls_resumed} p)
          <*> #{peek warpcore_request, tls_version} p
          <*> #{peek warpcore_request, tls_cipher} p
          <*> #{peek warpcore_request, tls_sni} p
          <*> #{peek warpcore_request, tls_alpn} p
          <*> pure chain
      pure (Just v)

timeoutHeader, timeoutIdle, timeoutBody, timeoutWrite, timeoutAnswer :: Word32
timeoutHeader = #{const WARPCORE_TIMEOUT_HEADER}
timeoutIdle = #{const WARPCORE_TIMEOUT_IDLE}
timeoutBody = #{const WARPCORE_TIMEOUT_BODY}
timeoutWrite = #{const WARPCORE_TIMEOUT_WRITE}
timeoutAnswer = #{const WARPCORE_TIMEOUT_ANSWER}

logLevelError, logLevelWarning, logLevelInfo :: Word32
logLevelError = #{const WARPCORE_LOG_LEVEL_ERROR}
logLevelWarning = #{const WARPCORE_LOG_LEVEL_WARNING}
logLevelInfo = #{const WARPCORE_LOG_LEVEL_INFO}

-- | @warpcore_upgrade_event@ bits, as an 'UpgradeCallback' is told them.
upgradeEventReadable, upgradeEventWritable, upgradeEventClosed, upgradeEventDraining, upgradeEventQuiet :: Word32
upgradeEventReadable = #{const WARPCORE_UPGRADE_EVENT_READABLE}
upgradeEventWritable = #{const WARPCORE_UPGRADE_EVENT_WRITABLE}
upgradeEventClosed = #{const WARPCORE_UPGRADE_EVENT_CLOSED}
upgradeEventDraining = #{const WARPCORE_UPGRADE_EVENT_DRAINING}
upgradeEventQuiet = #{const WARPCORE_UPGRADE_EVENT_QUIET}

-- | @warpcore_websocket_event@ bits, as a 'WebSocketCallback' is told them.
websocketEventMessage, websocketEventWritable, websocketEventClosed, websocketEventDraining :: Word32
websocketEventMessage = #{const WARPCORE_WEBSOCKET_EVENT_MESSAGE}
websocketEventWritable = #{const WARPCORE_WEBSOCKET_EVENT_WRITABLE}
websocketEventClosed = #{const WARPCORE_WEBSOCKET_EVENT_CLOSED}
websocketEventDraining = #{const WARPCORE_WEBSOCKET_EVENT_DRAINING}

-- | @warpcore_websocket_kind@: what a message carries.
websocketKindText, websocketKindBinary, websocketKindClose :: Word32
websocketKindText = #{const WARPCORE_WEBSOCKET_KIND_TEXT}
websocketKindBinary = #{const WARPCORE_WEBSOCKET_KIND_BINARY}
websocketKindClose = #{const WARPCORE_WEBSOCKET_KIND_CLOSE}

-- | @warpcore_handler_cb@.
type HandlerCallback = Ptr () -> Ptr RequestView -> Ptr Response -> IO ()

-- | @warpcore_answering_cb@: returns a prepared response to answer with, or
-- NULL when it answered through the handle. (The binding's handlers answer
-- through the handle; this is here so every C function has its import.)
type AnsweringCallback = Ptr () -> Ptr RequestView -> Ptr Response -> IO (Ptr Prepared)

-- | @warpcore_release_cb@.
type ReleaseCallback = Ptr () -> Ptr Word8 -> CSize -> IO ()

-- | @warpcore_access_log_cb@: a batch of complete log lines.
type AccessLogCallback = Ptr () -> Ptr Word8 -> CSize -> IO ()

-- | @warpcore_error_log_cb@: a level and one message.
type ErrorLogCallback = Ptr () -> Word32 -> Ptr Word8 -> CSize -> IO ()

-- | @warpcore_upgrade_cb@: an upgraded connection's events (bits), on the
-- worker thread that owns it; must not block.
type UpgradeCallback = Ptr () -> Ptr Upgraded -> Word32 -> IO ()

-- | @warpcore_websocket_cb@: a WebSocket's events (bits), on the worker
-- thread that owns it; must not block.
type WebSocketCallback = Ptr () -> Ptr WebSocket -> Word32 -> IO ()

-- | Wraps an 'UpgradeCallback'. It is entered from the library's worker
-- threads without the binding's gate (see "cbits"): the binding's own
-- take-over passes NULL and uses blocking reads instead.
foreign import ccall "wrapper"
  mkUpgradeCallback :: UpgradeCallback -> IO (FunPtr UpgradeCallback)

-- | Wraps a 'WebSocketCallback' (entered as 'mkUpgradeCallback's are).
foreign import ccall "wrapper"
  mkWebSocketCallback :: WebSocketCallback -> IO (FunPtr WebSocketCallback)

foreign import ccall "wrapper"
  mkAccessLogCallback :: AccessLogCallback -> IO (FunPtr AccessLogCallback)

foreign import ccall "wrapper"
  mkErrorLogCallback :: ErrorLogCallback -> IO (FunPtr ErrorLogCallback)

-- | @warpcore_connection_open_cb@: on the worker thread, before any byte of
-- the connection is read; 'False' refuses it.
type ConnectionOpenCallback = Ptr () -> Ptr ConnectionInfo -> IO CBool

-- | @warpcore_connection_close_cb@.
type ConnectionCloseCallback = Ptr () -> Ptr ConnectionInfo -> IO ()

foreign import ccall "wrapper"
  mkConnectionOpenCallback :: ConnectionOpenCallback -> IO (FunPtr ConnectionOpenCallback)

foreign import ccall "wrapper"
  mkConnectionCloseCallback :: ConnectionCloseCallback -> IO (FunPtr ConnectionCloseCallback)

-- | Wraps a Haskell handler as a C function pointer. Release it with
-- 'Foreign.Ptr.freeHaskellFunPtr' once the server using it is freed.
foreign import ccall "wrapper"
  mkHandlerCallback :: HandlerCallback -> IO (FunPtr HandlerCallback)

-- config ----------------------------------------------------------------

foreign import ccall unsafe "warpcore_config_new"
  c_warpcore_config_new :: Ptr (Ptr Config) -> IO Result
foreign import ccall unsafe "warpcore_config_free"
  c_warpcore_config_free :: Ptr Config -> IO ()
foreign import ccall unsafe "&warpcore_config_free"
  p_warpcore_config_free :: FunPtr (Ptr Config -> IO ())
foreign import ccall unsafe "warpcore_config_set_listen"
  c_warpcore_config_set_listen :: Ptr Config -> Ptr Word8 -> CSize -> IO Result
foreign import ccall unsafe "warpcore_config_set_workers"
  c_warpcore_config_set_workers :: Ptr Config -> Word32 -> IO Result
foreign import ccall unsafe "warpcore_config_set_external_workers"
  c_warpcore_config_set_external_workers :: Ptr Config -> CBool -> IO Result
foreign import ccall unsafe "warpcore_config_set_share_port"
  c_warpcore_config_set_share_port :: Ptr Config -> CBool -> IO Result
foreign import ccall unsafe "warpcore_config_add_listener"
  c_warpcore_config_add_listener :: Ptr Config -> Ptr Word8 -> CSize -> IO Result
foreign import ccall unsafe "warpcore_config_clear_listeners"
  c_warpcore_config_clear_listeners :: Ptr Config -> IO Result
foreign import ccall unsafe "warpcore_config_set_proxy_protocol"
  c_warpcore_config_set_proxy_protocol :: Ptr Config -> Word32 -> IO Result
foreign import ccall unsafe "warpcore_config_set_listener_proxy_protocol"
  c_warpcore_config_set_listener_proxy_protocol :: Ptr Config -> Ptr Word8 -> CSize -> Word32 -> IO Result
foreign import ccall unsafe "warpcore_config_set_connection_hooks"
  c_warpcore_config_set_connection_hooks
    :: Ptr Config -> FunPtr ConnectionOpenCallback -> FunPtr ConnectionCloseCallback -> Ptr () -> IO Result
-- safe: from another thread they may wait for the handler call to end.
foreign import ccall safe "warpcore_response_set_reason"
  c_warpcore_response_set_reason :: Ptr Response -> Ptr Word8 -> CSize -> IO Result
foreign import ccall safe "warpcore_response_pause_timeout"
  c_warpcore_response_pause_timeout :: Ptr Response -> IO Result

-- | @warpcore_close_cb@: on the worker thread, when the connection lets go of
-- a deferred request unanswered (see @warpcore_response_on_close@); must not
-- block. The response handle is still the caller's.
type CloseCallback = Ptr () -> Ptr Response -> IO ()

foreign import ccall "wrapper"
  mkCloseCallback :: CloseCallback -> IO (FunPtr CloseCallback)

-- safe: a call that replaces a callback may wait for a running one.
foreign import ccall safe "warpcore_response_on_close"
  c_warpcore_response_on_close :: Ptr Response -> FunPtr CloseCallback -> Ptr () -> IO Result
foreign import ccall unsafe "warpcore_config_set_unix_socket_mode"
  c_warpcore_config_set_unix_socket_mode :: Ptr Config -> Word32 -> Int64 -> Int64 -> IO Result
-- Reads and may unset environment variables: not concurrently with other
-- threads that touch the environment.
foreign import ccall unsafe "warpcore_config_add_systemd_listeners"
  c_warpcore_config_add_systemd_listeners :: Ptr Config -> Ptr Word32 -> IO Result
foreign import ccall unsafe "warpcore_config_set_handler"
  c_warpcore_config_set_handler :: Ptr Config -> FunPtr HandlerCallback -> Ptr () -> IO Result
foreign import ccall unsafe "warpcore_config_set_server_name"
  c_warpcore_config_set_server_name :: Ptr Config -> Ptr Word8 -> CSize -> IO Result
foreign import ccall unsafe "warpcore_config_set_max_body_size"
  c_warpcore_config_set_max_body_size :: Ptr Config -> Word64 -> IO Result
foreign import ccall unsafe "warpcore_config_set_whole_body_max"
  c_warpcore_config_set_whole_body_max :: Ptr Config -> Word64 -> IO Result
foreign import ccall unsafe "warpcore_config_set_max_head_size"
  c_warpcore_config_set_max_head_size :: Ptr Config -> Word32 -> IO Result
foreign import ccall unsafe "warpcore_config_set_max_request_line"
  c_warpcore_config_set_max_request_line :: Ptr Config -> Word32 -> IO Result
foreign import ccall unsafe "warpcore_config_set_max_header_count"
  c_warpcore_config_set_max_header_count :: Ptr Config -> Word32 -> IO Result
foreign import ccall unsafe "warpcore_config_set_stream_high_water"
  c_warpcore_config_set_stream_high_water :: Ptr Config -> Word64 -> IO Result
foreign import ccall unsafe "warpcore_config_set_timeout"
  c_warpcore_config_set_timeout :: Ptr Config -> Word32 -> Word64 -> IO Result

foreign import ccall unsafe "warpcore_config_set_max_connections"
  c_warpcore_config_set_max_connections :: Ptr Config -> Word32 -> IO Result
foreign import ccall unsafe "warpcore_config_set_backlog"
  c_warpcore_config_set_backlog :: Ptr Config -> Word32 -> IO Result

foreign import ccall unsafe "warpcore_config_set_coalesce_wait"
  c_warpcore_config_set_coalesce_wait :: Ptr Config -> Word32 -> IO Result
foreign import ccall unsafe "warpcore_config_set_access_log_file"
  c_warpcore_config_set_access_log_file :: Ptr Config -> Ptr Word8 -> CSize -> IO Result
foreign import ccall unsafe "warpcore_config_set_access_log_callback"
  c_warpcore_config_set_access_log_callback :: Ptr Config -> FunPtr AccessLogCallback -> Ptr () -> IO Result
foreign import ccall unsafe "warpcore_config_set_error_log"
  c_warpcore_config_set_error_log :: Ptr Config -> FunPtr ErrorLogCallback -> Ptr () -> IO Result
foreign import ccall unsafe "warpcore_config_add_static"
  c_warpcore_config_add_static :: Ptr Config -> Ptr Word8 -> CSize -> Ptr Word8 -> CSize -> IO Result
foreign import ccall unsafe "warpcore_config_set_file_cache"
  c_warpcore_config_set_file_cache :: Ptr Config -> Word64 -> Word64 -> IO Result
foreign import ccall unsafe "warpcore_config_set_static_dotfiles"
  c_warpcore_config_set_static_dotfiles :: Ptr Config -> CBool -> IO Result
foreign import ccall unsafe "warpcore_config_set_sched_batch"
  c_warpcore_config_set_sched_batch :: Ptr Config -> CBool -> IO Result
-- | Moves the calling OS thread to @SCHED_BATCH@ (1) or @SCHED_OTHER@ (0);
-- threads it starts afterwards inherit the policy. A Haskell thread that is
-- not bound may run on another OS thread after any call: use it from a
-- bound thread ('Control.Concurrent.forkOS') or as the binding's dispatcher does.
foreign import ccall unsafe "warpcore_thread_set_sched_batch"
  c_warpcore_thread_set_sched_batch :: CBool -> IO Result
-- | Whether a client's FIN while its answer is deferred ends its pending
-- requests as a reset does (their close callbacks run, their handles get
-- @CLOSED@); default off: a FIN is a half-close and the answers still go out.
foreign import ccall unsafe "warpcore_config_set_client_fin_ends_request"
  c_warpcore_config_set_client_fin_ends_request :: Ptr Config -> CBool -> IO Result

foreign import ccall unsafe "warpcore_config_set_answering_handler"
  c_warpcore_config_set_answering_handler :: Ptr Config -> FunPtr AnsweringCallback -> Ptr () -> IO Result

-- response ----------------------------------------------------------------

foreign import ccall unsafe "warpcore_prepared_new"
  c_warpcore_prepared_new :: Word16 -> Ptr Header -> CSize -> Ptr Word8 -> CSize -> Ptr (Ptr Prepared) -> IO Result
foreign import ccall unsafe "warpcore_prepared_free"
  c_warpcore_prepared_free :: Ptr Prepared -> IO ()
-- safe: from another thread it may wait for the handler call to return.
foreign import ccall safe "warpcore_respond_prepared"
  c_warpcore_respond_prepared :: Ptr Response -> Ptr Prepared -> IO Result

-- safe: it opens the file (through the worker's caches, but it may touch the disk).
foreign import ccall safe "warpcore_respond_file"
  c_warpcore_respond_file :: Ptr Response -> Word16 -> Ptr Header -> CSize -> Ptr Word8 -> CSize -> IO Result

foreign import ccall safe "warpcore_respond"
  c_warpcore_respond :: Ptr Response -> Word16 -> Ptr Header -> CSize -> Ptr Word8 -> CSize -> IO Result
foreign import ccall unsafe "warpcore_respond"
  c_warpcore_respond_unsafe :: Ptr Response -> Word16 -> Ptr Header -> CSize -> Ptr Word8 -> CSize -> IO Result
foreign import ccall safe "warpcore_respond_buffer"
  c_warpcore_respond_buffer
    :: Ptr Response -> Word16 -> Ptr Header -> CSize -> Ptr Word8 -> CSize
    -> FunPtr ReleaseCallback -> Ptr () -> IO Result
foreign import ccall unsafe "warpcore_respond_buffer"
  c_warpcore_respond_buffer_unsafe
    :: Ptr Response -> Word16 -> Ptr Header -> CSize -> Ptr Word8 -> CSize
    -> FunPtr ReleaseCallback -> Ptr () -> IO Result
foreign import ccall safe "warpcore_response_start"
  c_warpcore_response_start :: Ptr Response -> Word16 -> Ptr Header -> CSize -> Int64 -> IO Result
foreign import ccall unsafe "warpcore_response_start"
  c_warpcore_response_start_unsafe :: Ptr Response -> Word16 -> Ptr Header -> CSize -> Int64 -> IO Result
foreign import ccall safe "warpcore_response_write"
  c_warpcore_response_write :: Ptr Response -> Ptr Word8 -> CSize -> IO Result
foreign import ccall safe "warpcore_response_write_buffer"
  c_warpcore_response_write_buffer
    :: Ptr Response -> Ptr Word8 -> CSize -> FunPtr ReleaseCallback -> Ptr () -> IO Result
foreign import ccall safe "warpcore_response_end"
  c_warpcore_response_end :: Ptr Response -> IO Result
foreign import ccall safe "warpcore_response_abort"
  c_warpcore_response_abort :: Ptr Response -> IO Result

-- request bodies that stream -------------------------------------------------

-- unsafe: it only takes the reader, inside the handler call on its thread.
foreign import ccall unsafe "warpcore_response_body"
  c_warpcore_response_body :: Ptr Response -> Ptr (Ptr Body) -> IO Result
-- safe: off the worker threads it waits for bytes from the client.
foreign import ccall safe "warpcore_body_read"
  c_warpcore_body_read :: Ptr Body -> Ptr Word8 -> CSize -> Ptr CSize -> IO Result
-- unsafe: it never waits (WOULD_BLOCK while nothing has arrived).
foreign import ccall unsafe "warpcore_body_try_read"
  c_warpcore_body_try_read :: Ptr Body -> Ptr Word8 -> CSize -> Ptr CSize -> IO Result

-- | @warpcore_body_ready_cb@: on the worker thread, once after a
-- 'c_warpcore_body_try_read' that said WOULD_BLOCK, when the body can be read
-- on; must not block.
type BodyReadyCallback = Ptr () -> IO ()

foreign import ccall "wrapper"
  mkBodyReadyCallback :: BodyReadyCallback -> IO (FunPtr BodyReadyCallback)

-- safe: replacing a callback waits for a running one (which may be Haskell).
foreign import ccall safe "warpcore_body_on_readable"
  c_warpcore_body_on_readable :: Ptr Body -> FunPtr BodyReadyCallback -> Ptr () -> IO Result

-- safe: it waits for a readiness callback running on another thread (which
-- may be Haskell code, needing this capability's RTS); else it only lets go
-- of the reader (the worker discards the rest).
foreign import ccall safe "warpcore_body_free"
  c_warpcore_body_free :: Ptr Body -> IO ()

-- upgraded connections ----------------------------------------------------------

-- safe: from another thread they may wait for the handler call to return,
-- and the callback may be called before they return.
foreign import ccall safe "warpcore_response_upgrade"
  c_warpcore_response_upgrade
    :: Ptr Response -> Ptr Header -> CSize -> FunPtr UpgradeCallback -> Ptr () -> Ptr (Ptr Upgraded) -> IO Result
foreign import ccall safe "warpcore_response_take_over"
  c_warpcore_response_take_over :: Ptr Response -> FunPtr UpgradeCallback -> Ptr () -> Ptr (Ptr Upgraded) -> IO Result
-- safe: off the worker threads they wait for the peer.
foreign import ccall safe "warpcore_upgraded_read"
  c_warpcore_upgraded_read :: Ptr Upgraded -> Ptr Word8 -> CSize -> Ptr CSize -> IO Result
foreign import ccall safe "warpcore_upgraded_write"
  c_warpcore_upgraded_write :: Ptr Upgraded -> Ptr Word8 -> CSize -> IO Result
foreign import ccall safe "warpcore_upgraded_write_buffer"
  c_warpcore_upgraded_write_buffer
    :: Ptr Upgraded -> Ptr Word8 -> CSize -> FunPtr ReleaseCallback -> Ptr () -> IO Result
-- unsafe: these never wait (a release callback they may run is C).
foreign import ccall unsafe "warpcore_upgraded_shutdown_write"
  c_warpcore_upgraded_shutdown_write :: Ptr Upgraded -> IO Result
foreign import ccall unsafe "warpcore_upgraded_close"
  c_warpcore_upgraded_close :: Ptr Upgraded -> IO Result
foreign import ccall unsafe "warpcore_upgraded_set_nonblocking"
  c_warpcore_upgraded_set_nonblocking :: Ptr Upgraded -> CBool -> IO Result
foreign import ccall unsafe "warpcore_upgraded_set_idle_timeout"
  c_warpcore_upgraded_set_idle_timeout :: Ptr Upgraded -> Word64 -> IO Result
foreign import ccall unsafe "warpcore_upgraded_set_quiet_notice"
  c_warpcore_upgraded_set_quiet_notice :: Ptr Upgraded -> CBool -> IO Result
foreign import ccall unsafe "warpcore_upgraded_draining"
  c_warpcore_upgraded_draining :: Ptr Upgraded -> Ptr Word64 -> IO Result
foreign import ccall unsafe "warpcore_upgraded_free"
  c_warpcore_upgraded_free :: Ptr Upgraded -> IO ()

-- websockets ----------------------------------------------------------------

foreign import ccall safe "warpcore_websocket_accept"
  c_warpcore_websocket_accept
    :: Ptr Response -> Ptr Header -> CSize -> Word64 -> FunPtr WebSocketCallback -> Ptr ()
    -> Ptr (Ptr WebSocket) -> IO Result
foreign import ccall safe "warpcore_websocket_recv"
  c_warpcore_websocket_recv :: Ptr WebSocket -> Ptr Word8 -> CSize -> Ptr CSize -> Ptr Word32 -> IO Result
foreign import ccall safe "warpcore_websocket_send"
  c_warpcore_websocket_send :: Ptr WebSocket -> Word32 -> Ptr Word8 -> CSize -> IO Result
foreign import ccall unsafe "warpcore_websocket_close"
  c_warpcore_websocket_close :: Ptr WebSocket -> Word16 -> Ptr Word8 -> CSize -> IO Result
foreign import ccall unsafe "warpcore_websocket_set_nonblocking"
  c_warpcore_websocket_set_nonblocking :: Ptr WebSocket -> CBool -> IO Result
foreign import ccall unsafe "warpcore_websocket_set_idle_timeout"
  c_warpcore_websocket_set_idle_timeout :: Ptr WebSocket -> Word64 -> IO Result
foreign import ccall unsafe "warpcore_websocket_draining"
  c_warpcore_websocket_draining :: Ptr WebSocket -> Ptr Word64 -> IO Result
foreign import ccall unsafe "warpcore_websocket_free"
  c_warpcore_websocket_free :: Ptr WebSocket -> IO ()

-- results and version -------------------------------------------------------

foreign import ccall unsafe "warpcore_result_str"
  c_warpcore_result_str :: Word32 -> IO CString
foreign import ccall unsafe "warpcore_last_error_message"
  c_warpcore_last_error_message :: Ptr CChar -> CSize -> IO CSize
foreign import ccall unsafe "warpcore_version"
  c_warpcore_version :: IO CString

-- server ----------------------------------------------------------------

foreign import ccall safe "warpcore_server_start"
  c_warpcore_server_start :: Ptr Config -> Ptr (Ptr Server) -> IO Result
foreign import ccall unsafe "warpcore_server_port"
  c_warpcore_server_port :: Ptr Server -> IO Word16
foreign import ccall unsafe "warpcore_server_workers"
  c_warpcore_server_workers :: Ptr Server -> IO Word32
foreign import ccall unsafe "warpcore_server_listener_count"
  c_warpcore_server_listener_count :: Ptr Server -> IO Word32
foreign import ccall unsafe "warpcore_server_listener_address"
  c_warpcore_server_listener_address :: Ptr Server -> Word32 -> Ptr CChar -> CSize -> Ptr CSize -> IO Result
foreign import ccall safe "warpcore_server_run_worker"
  c_warpcore_server_run_worker :: Ptr Server -> Word32 -> IO Result
foreign import ccall safe "warpcore_server_shutdown"
  c_warpcore_server_shutdown :: Ptr Server -> Word32 -> IO Result
foreign import ccall safe "warpcore_server_wait"
  c_warpcore_server_wait :: Ptr Server -> IO Result
foreign import ccall safe "warpcore_server_free"
  c_warpcore_server_free :: Ptr Server -> IO ()

foreign import ccall unsafe "warpcore_server_stats"
  c_warpcore_server_stats :: Ptr Server -> Ptr Stats -> IO Result
foreign import ccall unsafe "warpcore_server_file_cache_stats"
  c_warpcore_server_file_cache_stats :: Ptr Server -> Ptr FileCacheStats -> IO Result
foreign import ccall unsafe "warpcore_server_shutdown_report"
  c_warpcore_server_shutdown_report :: Ptr Server -> Ptr ShutdownReport -> IO Result
-- safe: it waits until every worker uses the new settings.
foreign import ccall safe "warpcore_server_reload"
  c_warpcore_server_reload :: Ptr Server -> Ptr Config -> IO Result
-- safe: it reopens a file.
foreign import ccall safe "warpcore_server_reopen_logs"
  c_warpcore_server_reopen_logs :: Ptr Server -> IO Result

-- the binding's dispatcher (cbits/warpcore_hs.c) -----------------------------

-- | @warpcore_hs_dispatch@: the C handler's userdata, one queue per dispatcher.
data Dispatch

-- | @warpcore_hs_item@: one queued request, owned by whoever took it.
data Item

foreign import ccall unsafe "warpcore_hs_dispatch_new"
  c_warpcore_hs_dispatch_new :: Word32 -> IO (Ptr Dispatch)
-- unsafe: one thread-local check once the thread was moved.
foreign import ccall unsafe "warpcore_hs_sched_batch"
  c_warpcore_hs_sched_batch :: IO CInt
-- safe: it may fill MVars (hs_try_putmvar).
foreign import ccall safe "warpcore_hs_dispatch_close"
  c_warpcore_hs_dispatch_close :: Ptr Dispatch -> IO ()
foreign import ccall safe "warpcore_hs_dispatch_free"
  c_warpcore_hs_dispatch_free :: Ptr Dispatch -> IO ()
foreign import ccall unsafe "warpcore_hs_dispatch_take"
  c_warpcore_hs_dispatch_take :: Ptr Dispatch -> Word32 -> StablePtr a -> CInt -> Ptr (Ptr Item) -> IO CInt
foreign import ccall unsafe "warpcore_hs_item_free"
  c_warpcore_hs_item_free :: Ptr Item -> IO ()
foreign import ccall unsafe "&warpcore_hs_item_free"
  p_warpcore_hs_item_free :: FunPtr (Ptr Item -> IO ())
foreign import ccall unsafe "&warpcore_hs_handler"
  p_warpcore_hs_handler :: FunPtr HandlerCallback
foreign import ccall unsafe "&warpcore_hs_release_stable"
  p_warpcore_hs_release_stable :: FunPtr ReleaseCallback
foreign import ccall unsafe "&warpcore_hs_release_free"
  p_warpcore_hs_release_free :: FunPtr ReleaseCallback

foreign import ccall unsafe "warpcore_hs_sched_batch_retain"
  c_warpcore_hs_sched_batch_retain :: IO ()
foreign import ccall unsafe "warpcore_hs_sched_batch_release"
  c_warpcore_hs_sched_batch_release :: IO ()

-- the gate (cbits/warpcore_hs.h) ---------------------------------------------

-- | Installs the runtime exit hook that closes the gate (once per process):
-- 1 when it is in place, 0 under a shared RTS that hides its config.
foreign import ccall unsafe "warpcore_hs_gate_install"
  c_warpcore_hs_gate_install :: IO CInt
-- safe: it waits for callbacks still running.
foreign import ccall safe "warpcore_hs_gate_close"
  c_warpcore_hs_gate_close :: IO ()
-- | How many engine callbacks the calling OS thread is inside.
foreign import ccall unsafe "warpcore_hs_gate_depth"
  c_warpcore_hs_gate_depth :: IO CInt
-- | Handler trampoline: userdata is the wrapper ('castFunPtrToPtr').
foreign import ccall unsafe "&warpcore_hs_gated_handler"
  p_warpcore_hs_gated_handler :: FunPtr HandlerCallback
foreign import ccall unsafe "&warpcore_hs_gated_access_log"
  p_warpcore_hs_gated_access_log :: FunPtr AccessLogCallback
foreign import ccall unsafe "&warpcore_hs_gated_error_log"
  p_warpcore_hs_gated_error_log :: FunPtr ErrorLogCallback

-- | The binding's @warpcore_hs_hooks@: the hooks' wrappers for the trampolines.
data HsHooks

foreign import ccall unsafe "warpcore_hs_hooks_new"
  c_warpcore_hs_hooks_new :: FunPtr ConnectionOpenCallback -> FunPtr ConnectionCloseCallback -> IO (Ptr HsHooks)
foreign import ccall unsafe "warpcore_hs_hooks_free"
  c_warpcore_hs_hooks_free :: Ptr HsHooks -> IO ()
-- | Hook trampolines: userdata is a 'HsHooks'.
foreign import ccall unsafe "&warpcore_hs_gated_on_open"
  p_warpcore_hs_gated_on_open :: FunPtr ConnectionOpenCallback
foreign import ccall unsafe "&warpcore_hs_gated_on_close"
  p_warpcore_hs_gated_on_close :: FunPtr ConnectionCloseCallback

-- calls that keep their error message (cbits) -----------------------------------
-- Each takes, last, a buffer of 'messageSize' bytes that receives the
-- message when the call fails. Safe where the plain import is safe.

-- | @WARPCORE_HS_MESSAGE_SIZE@.
messageSize :: Int
messageSize = #{const WARPCORE_HS_MESSAGE_SIZE}

foreign import ccall unsafe "warpcore_hs_config_set_listen"
  c_warpcore_hs_config_set_listen :: Ptr Config -> Ptr Word8 -> CSize -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_workers"
  c_warpcore_hs_config_set_workers :: Ptr Config -> Word32 -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_external_workers"
  c_warpcore_hs_config_set_external_workers :: Ptr Config -> CBool -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_share_port"
  c_warpcore_hs_config_set_share_port :: Ptr Config -> CBool -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_handler"
  c_warpcore_hs_config_set_handler :: Ptr Config -> FunPtr HandlerCallback -> Ptr () -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_server_name"
  c_warpcore_hs_config_set_server_name :: Ptr Config -> Ptr Word8 -> CSize -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_max_body_size"
  c_warpcore_hs_config_set_max_body_size :: Ptr Config -> Word64 -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_whole_body_max"
  c_warpcore_hs_config_set_whole_body_max :: Ptr Config -> Word64 -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_max_head_size"
  c_warpcore_hs_config_set_max_head_size :: Ptr Config -> Word32 -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_max_request_line"
  c_warpcore_hs_config_set_max_request_line :: Ptr Config -> Word32 -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_max_header_count"
  c_warpcore_hs_config_set_max_header_count :: Ptr Config -> Word32 -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_stream_high_water"
  c_warpcore_hs_config_set_stream_high_water :: Ptr Config -> Word64 -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_coalesce_wait"
  c_warpcore_hs_config_set_coalesce_wait :: Ptr Config -> Word32 -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_max_connections"
  c_warpcore_hs_config_set_max_connections :: Ptr Config -> Word32 -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_static_dotfiles"
  c_warpcore_hs_config_set_static_dotfiles :: Ptr Config -> CBool -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_sched_batch"
  c_warpcore_hs_config_set_sched_batch :: Ptr Config -> CBool -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_access_log_file"
  c_warpcore_hs_config_set_access_log_file :: Ptr Config -> Ptr Word8 -> CSize -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_access_log_callback"
  c_warpcore_hs_config_set_access_log_callback :: Ptr Config -> FunPtr AccessLogCallback -> Ptr () -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_error_log"
  c_warpcore_hs_config_set_error_log :: Ptr Config -> FunPtr ErrorLogCallback -> Ptr () -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_timeout"
  c_warpcore_hs_config_set_timeout :: Ptr Config -> Word32 -> Word64 -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_add_static"
  c_warpcore_hs_config_add_static :: Ptr Config -> Ptr Word8 -> CSize -> Ptr Word8 -> CSize -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_file_cache"
  c_warpcore_hs_config_set_file_cache :: Ptr Config -> Word64 -> Word64 -> Ptr CChar -> IO Result

foreign import ccall unsafe "warpcore_tls_new"
  c_warpcore_tls_new :: Ptr (Ptr TLS) -> IO Result
foreign import ccall unsafe "warpcore_tls_free"
  c_warpcore_tls_free :: Ptr TLS -> IO ()
foreign import ccall unsafe "warpcore_tls_add_cert_files"
  c_warpcore_tls_add_cert_files :: Ptr TLS -> Ptr Word8 -> CSize -> Ptr Word8 -> CSize -> IO Result
foreign import ccall unsafe "warpcore_tls_add_cert_pem"
  c_warpcore_tls_add_cert_pem :: Ptr TLS -> Ptr Word8 -> CSize -> Ptr Word8 -> CSize -> IO Result
foreign import ccall unsafe "warpcore_tls_set_alpn"
  c_warpcore_tls_set_alpn :: Ptr TLS -> Ptr Str -> CSize -> IO Result
foreign import ccall unsafe "warpcore_tls_set_client_auth_pem"
  c_warpcore_tls_set_client_auth_pem :: Ptr TLS -> Word32 -> Ptr Word8 -> CSize -> IO Result
foreign import ccall unsafe "warpcore_tls_set_client_auth_file"
  c_warpcore_tls_set_client_auth_file :: Ptr TLS -> Word32 -> Ptr Word8 -> CSize -> IO Result
foreign import ccall unsafe "warpcore_tls_set_session_tickets"
  c_warpcore_tls_set_session_tickets :: Ptr TLS -> CBool -> IO Result
foreign import ccall unsafe "warpcore_tls_set_ktls"
  c_warpcore_tls_set_ktls :: Ptr TLS -> CBool -> IO Result
foreign import ccall unsafe "warpcore_tls_set_min_version"
  c_warpcore_tls_set_min_version :: Ptr TLS -> Word16 -> IO Result
foreign import ccall unsafe "warpcore_tls_set_require_sni_match"
  c_warpcore_tls_set_require_sni_match :: Ptr TLS -> CBool -> IO Result
foreign import ccall unsafe "warpcore_config_add_tls_listener"
  c_warpcore_config_add_tls_listener :: Ptr Config -> Ptr Word8 -> CSize -> Ptr TLS -> IO Result
foreign import ccall unsafe "warpcore_hs_tls_add_cert_files"
  c_warpcore_hs_tls_add_cert_files :: Ptr TLS -> Ptr Word8 -> CSize -> Ptr Word8 -> CSize -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_tls_add_cert_pem"
  c_warpcore_hs_tls_add_cert_pem :: Ptr TLS -> Ptr Word8 -> CSize -> Ptr Word8 -> CSize -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_tls_set_client_auth_pem"
  c_warpcore_hs_tls_set_client_auth_pem :: Ptr TLS -> Word32 -> Ptr Word8 -> CSize -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_tls_set_client_auth_file"
  c_warpcore_hs_tls_set_client_auth_file :: Ptr TLS -> Word32 -> Ptr Word8 -> CSize -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_add_tls_listener"
  c_warpcore_hs_config_add_tls_listener :: Ptr Config -> Ptr Word8 -> CSize -> Ptr TLS -> Ptr CChar -> IO Result

foreign import ccall unsafe "warpcore_hs_config_add_listener"
  c_warpcore_hs_config_add_listener :: Ptr Config -> Ptr Word8 -> CSize -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_clear_listeners"
  c_warpcore_hs_config_clear_listeners :: Ptr Config -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_unix_socket_mode"
  c_warpcore_hs_config_set_unix_socket_mode :: Ptr Config -> Word32 -> Int64 -> Int64 -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_add_systemd_listeners"
  c_warpcore_hs_config_add_systemd_listeners :: Ptr Config -> Ptr Word32 -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_proxy_protocol"
  c_warpcore_hs_config_set_proxy_protocol :: Ptr Config -> Word32 -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_listener_proxy_protocol"
  c_warpcore_hs_config_set_listener_proxy_protocol :: Ptr Config -> Ptr Word8 -> CSize -> Word32 -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_config_set_connection_hooks"
  c_warpcore_hs_config_set_connection_hooks
    :: Ptr Config -> FunPtr ConnectionOpenCallback -> FunPtr ConnectionCloseCallback -> Ptr () -> Ptr CChar -> IO Result
-- safe: from another thread they may wait for the handler call to end.
foreign import ccall safe "warpcore_hs_response_set_reason"
  c_warpcore_hs_response_set_reason :: Ptr Response -> Ptr Word8 -> CSize -> Ptr CChar -> IO Result
foreign import ccall safe "warpcore_hs_response_pause_timeout"
  c_warpcore_hs_response_pause_timeout :: Ptr Response -> Ptr CChar -> IO Result

foreign import ccall safe "warpcore_hs_respond"
  c_warpcore_hs_respond :: Ptr Response -> Word16 -> Ptr Header -> CSize -> Ptr Word8 -> CSize -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_respond"
  c_warpcore_hs_respond_unsafe :: Ptr Response -> Word16 -> Ptr Header -> CSize -> Ptr Word8 -> CSize -> Ptr CChar -> IO Result
foreign import ccall safe "warpcore_hs_respond_buffer"
  c_warpcore_hs_respond_buffer
    :: Ptr Response -> Word16 -> Ptr Header -> CSize -> Ptr Word8 -> CSize
    -> FunPtr ReleaseCallback -> Ptr () -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_respond_buffer"
  c_warpcore_hs_respond_buffer_unsafe
    :: Ptr Response -> Word16 -> Ptr Header -> CSize -> Ptr Word8 -> CSize
    -> FunPtr ReleaseCallback -> Ptr () -> Ptr CChar -> IO Result
foreign import ccall safe "warpcore_hs_respond_file"
  c_warpcore_hs_respond_file :: Ptr Response -> Word16 -> Ptr Header -> CSize -> Ptr Word8 -> CSize -> Ptr CChar -> IO Result
foreign import ccall safe "warpcore_hs_response_start"
  c_warpcore_hs_response_start :: Ptr Response -> Word16 -> Ptr Header -> CSize -> Int64 -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_response_start"
  c_warpcore_hs_response_start_unsafe :: Ptr Response -> Word16 -> Ptr Header -> CSize -> Int64 -> Ptr CChar -> IO Result
foreign import ccall safe "warpcore_hs_response_write"
  c_warpcore_hs_response_write :: Ptr Response -> Ptr Word8 -> CSize -> Ptr CChar -> IO Result
foreign import ccall safe "warpcore_hs_response_write_buffer"
  c_warpcore_hs_response_write_buffer
    :: Ptr Response -> Ptr Word8 -> CSize -> FunPtr ReleaseCallback -> Ptr () -> Ptr CChar -> IO Result
foreign import ccall safe "warpcore_hs_response_end"
  c_warpcore_hs_response_end :: Ptr Response -> Ptr CChar -> IO Result
foreign import ccall safe "warpcore_hs_response_abort"
  c_warpcore_hs_response_abort :: Ptr Response -> Ptr CChar -> IO Result

-- unsafe: inside the handler call (a "wrapper" callback on the worker thread).
foreign import ccall unsafe "warpcore_hs_response_body"
  c_warpcore_hs_response_body :: Ptr Response -> Ptr (Ptr Body) -> Ptr CChar -> IO Result
-- safe: it waits for the client's bytes (off the worker threads).
foreign import ccall safe "warpcore_hs_body_read"
  c_warpcore_hs_body_read :: Ptr Body -> Ptr Word8 -> CSize -> Ptr CSize -> Ptr CChar -> IO Result

-- upgraded connections (see the plain imports for safe / unsafe)
foreign import ccall safe "warpcore_hs_response_upgrade"
  c_warpcore_hs_response_upgrade
    :: Ptr Response -> Ptr Header -> CSize -> FunPtr UpgradeCallback -> Ptr () -> Ptr (Ptr Upgraded) -> Ptr CChar -> IO Result
foreign import ccall safe "warpcore_hs_response_take_over"
  c_warpcore_hs_response_take_over :: Ptr Response -> FunPtr UpgradeCallback -> Ptr () -> Ptr (Ptr Upgraded) -> Ptr CChar -> IO Result
foreign import ccall safe "warpcore_hs_upgraded_read"
  c_warpcore_hs_upgraded_read :: Ptr Upgraded -> Ptr Word8 -> CSize -> Ptr CSize -> Ptr CChar -> IO Result
foreign import ccall safe "warpcore_hs_upgraded_write"
  c_warpcore_hs_upgraded_write :: Ptr Upgraded -> Ptr Word8 -> CSize -> Ptr CChar -> IO Result
foreign import ccall safe "warpcore_hs_upgraded_write_buffer"
  c_warpcore_hs_upgraded_write_buffer
    :: Ptr Upgraded -> Ptr Word8 -> CSize -> FunPtr ReleaseCallback -> Ptr () -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_upgraded_shutdown_write"
  c_warpcore_hs_upgraded_shutdown_write :: Ptr Upgraded -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_upgraded_close"
  c_warpcore_hs_upgraded_close :: Ptr Upgraded -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_upgraded_set_idle_timeout"
  c_warpcore_hs_upgraded_set_idle_timeout :: Ptr Upgraded -> Word64 -> Ptr CChar -> IO Result

foreign import ccall safe "warpcore_hs_server_start"
  c_warpcore_hs_server_start :: Ptr Config -> Ptr (Ptr Server) -> Ptr CChar -> IO Result
foreign import ccall safe "warpcore_hs_server_run_worker"
  c_warpcore_hs_server_run_worker :: Ptr Server -> Word32 -> Ptr CChar -> IO Result
foreign import ccall safe "warpcore_hs_server_shutdown"
  c_warpcore_hs_server_shutdown :: Ptr Server -> Word32 -> Ptr CChar -> IO Result
foreign import ccall safe "warpcore_hs_server_reload"
  c_warpcore_hs_server_reload :: Ptr Server -> Ptr Config -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_server_stats"
  c_warpcore_hs_server_stats :: Ptr Server -> Ptr Stats -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_server_file_cache_stats"
  c_warpcore_hs_server_file_cache_stats :: Ptr Server -> Ptr FileCacheStats -> Ptr CChar -> IO Result
foreign import ccall unsafe "warpcore_hs_server_shutdown_report"
  c_warpcore_hs_server_shutdown_report :: Ptr Server -> Ptr ShutdownReport -> Ptr CChar -> IO Result
foreign import ccall safe "warpcore_hs_server_reopen_logs"
  c_warpcore_hs_server_reopen_logs :: Ptr Server -> Ptr CChar -> IO Result

foreign import ccall unsafe "warpcore_hs_server_listener_address"
  c_warpcore_hs_server_listener_address :: Ptr Server -> Word32 -> Ptr CChar -> CSize -> Ptr CSize -> Ptr CChar -> IO Result

-- sockets the program opened (cbits) ---------------------------------------------

-- | A close-on-exec duplicate of a descriptor (numbered 3 or above), for a
-- server to own as @fd://N@; -1 with errno set.
foreign import ccall unsafe "warpcore_hs_dup_cloexec"
  c_warpcore_hs_dup_cloexec :: CInt -> IO CInt
-- | 1 when the descriptor is a socket that listens, 0 when not, -1 with errno set.
foreign import ccall unsafe "warpcore_hs_socket_listens"
  c_warpcore_hs_socket_listens :: CInt -> IO CInt

itemNext :: Ptr Item -> IO (Ptr Item)
itemNext = #{peek warpcore_hs_item, next}

itemResponse :: Ptr Item -> IO (Ptr Response)
itemResponse = #{peek warpcore_hs_item, response}

itemBody :: Ptr Item -> IO (Ptr Body)
itemBody = #{peek warpcore_hs_item, body}

itemData :: Ptr Item -> IO (Ptr Word8)
itemData = #{peek warpcore_hs_item, data}

itemDataLen :: Ptr Item -> IO CSize
itemDataLen = #{peek warpcore_hs_item, data_len}

itemRequest :: Ptr Item -> Ptr RequestView
itemRequest = (`plusPtr` #{offset warpcore_hs_item, request})
