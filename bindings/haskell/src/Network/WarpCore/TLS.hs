-- | TLS listeners: how a server's listener speaks TLS (the library does the
-- TLS, with rustls, on its event loops). Set 'Network.WarpCore.configTLS';
-- for WAI applications see "Network.Wai.Handler.WarpCoreTLS".
module Network.WarpCore.TLS
  ( TLSConfig (..)
  , Certificate (..)
  , ClientAuth (..)
  , tlsConfig
  , addTLSListener
  ) where

import Control.Exception (bracket)
import Control.Monad (forM_)
import Data.ByteString (ByteString)
import qualified Data.ByteString.Char8 as B8
import qualified Data.ByteString.Unsafe as BU
import Data.Word (Word16)
import Foreign.C.Types (CBool (..))
import Foreign.Marshal.Alloc (alloca)
import Foreign.Ptr (Ptr, castPtr, nullPtr)
import Foreign.Storable (peek)

import Network.WarpCore.Error (check, checkWith)
import qualified Network.WarpCore.Raw as Raw

-- | A certificate chain (PEM, the server's certificate first) and its
-- private key (PEM).
data Certificate
  = CertificateFiles FilePath FilePath
  -- ^ Files: read when the server starts and again at every reload (so that
  -- replacing them and reloading installs new certificates).
  | CertificateMemory ByteString ByteString
  -- ^ PEM text.
  deriving (Eq, Show)

-- | Whether clients are asked for certificates, checked against CA
-- certificates (a PEM file).
data ClientAuth
  = NoClientAuth
  | OptionalClientAuth FilePath
  | RequiredClientAuth FilePath
  deriving (Eq, Show)

-- | A TLS listener's setup.
data TLSConfig = TLSConfig
  { tlsCertificates :: [Certificate]
  -- ^ At least one; the first is the default, the others are chosen by the
  -- name a client asks for (SNI).
  , tlsClientAuth :: ClientAuth
  , tlsSessionTickets :: Bool
  -- ^ Resumption by tickets (default True).
  , tlsKernel :: Bool
  -- ^ Kernel TLS after the handshake where the kernel has it (default True).
  , tlsMinVersion :: Word16
  -- ^ @0x0303@ (TLS 1.2, the default) or @0x0304@ (TLS 1.3 only).
  , tlsRequireSniMatch :: Bool
  -- ^ Refuse (@unrecognized_name@) a client that asks for a name no
  -- certificate has, or for none (default False: it gets the first).
  }
  deriving (Eq, Show)

-- | One certificate, no client certificates, tickets and kernel TLS on,
-- TLS 1.2 and 1.3, any name served.
tlsConfig :: Certificate -> TLSConfig
tlsConfig cert = TLSConfig [cert] NoClientAuth True True 0x0303 False

-- | Makes listener @address@ of the C config speak TLS as the setup says
-- (an address that is the config's listen address already becomes TLS).
-- Throws 'Network.WarpCore.WarpCoreError' (a bad file: @WARPCORE_RESULT_TLS@,
-- with the library's message naming it).
addTLSListener :: TLSConfig -> Ptr Raw.Config -> String -> IO ()
addTLSListener cfg c address = bracket new Raw.c_warpcore_tls_free $ \t -> do
  forM_ (tlsCertificates cfg) $ \cert -> case cert of
    CertificateFiles chain key ->
      bytes2 (B8.pack chain) (B8.pack key) $ \cp cl kp kl ->
        checkWith "warpcore_tls_add_cert_files" (Raw.c_warpcore_hs_tls_add_cert_files t cp cl kp kl)
    CertificateMemory chain key ->
      bytes2 chain key $ \cp cl kp kl ->
        checkWith "warpcore_tls_add_cert_pem" (Raw.c_warpcore_hs_tls_add_cert_pem t cp cl kp kl)
  case tlsClientAuth cfg of
    NoClientAuth -> pure ()
    OptionalClientAuth ca -> clientAuth t Raw.tlsClientAuthOptional ca
    RequiredClientAuth ca -> clientAuth t Raw.tlsClientAuthRequired ca
  check "warpcore_tls_set_session_tickets" (Raw.c_warpcore_tls_set_session_tickets t (flag (tlsSessionTickets cfg)))
  check "warpcore_tls_set_ktls" (Raw.c_warpcore_tls_set_ktls t (flag (tlsKernel cfg)))
  check "warpcore_tls_set_min_version" (Raw.c_warpcore_tls_set_min_version t (tlsMinVersion cfg))
  check "warpcore_tls_set_require_sni_match" (Raw.c_warpcore_tls_set_require_sni_match t (flag (tlsRequireSniMatch cfg)))
  BU.unsafeUseAsCStringLen (B8.pack address) $ \(p, l) ->
    checkWith "warpcore_config_add_tls_listener" (Raw.c_warpcore_hs_config_add_tls_listener c (castPtr p) (fromIntegral l) t)
  where
    new = alloca $ \out -> do
      check "warpcore_tls_new" (Raw.c_warpcore_tls_new out)
      peek out
    flag b = CBool (if b then 1 else 0)
    clientAuth t mode ca =
      BU.unsafeUseAsCStringLen (B8.pack ca) $ \(p, l) ->
        checkWith "warpcore_tls_set_client_auth_file" (Raw.c_warpcore_hs_tls_set_client_auth_file t mode (castPtr p) (fromIntegral l))
    bytes2 a b k =
      BU.unsafeUseAsCStringLen a $ \(ap, al) ->
        BU.unsafeUseAsCStringLen b $ \(bp, bl) ->
          k (orNull ap al) (fromIntegral al) (orNull bp bl) (fromIntegral bl)
    orNull p l = if l == 0 then nullPtr else castPtr p
