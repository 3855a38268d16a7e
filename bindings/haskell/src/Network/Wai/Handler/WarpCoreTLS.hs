-- | HTTPS for WAI applications, named like warp-tls's
-- "Network.Wai.Handler.WarpTLS": 'runTLS' with 'tlsSettings' serves an
-- application over TLS. The TLS itself is the library's (rustls, on its
-- event loops, TLS 1.2 and 1.3, session tickets, kernel TLS where the kernel
-- has it), not the Haskell @tls@ package.
--
-- @
-- import Network.Wai.Handler.WarpCore (defaultSettings, setPort)
-- import Network.Wai.Handler.WarpCoreTLS (runTLS, tlsSettings)
--
-- main = runTLS (tlsSettings "cert.pem" "key.pem") (setPort 8443 defaultSettings) app
-- @
--
-- Requests have 'Network.Wai.isSecure' True; 'getTLSInfo' says what their
-- connection negotiated (TLS version, cipher, ALPN, SNI, resumption, the
-- client's certificates as DER) and 'clientCertificate' (Warp's) gives the
-- client's chain parsed:
--
-- @
-- app req respond = case getTLSInfo req of
--   Just t | (c : _) <- tlsClientCertificates t -> ... -- c: the client's certificate, DER
--   _ -> ...
-- @
--
-- What differs from warp-tls:
-- a listener serves TLS only (no 'OnInsecure' plain HTTP on the same
-- port), and the key must not be encrypted.
module Network.Wai.Handler.WarpCoreTLS
  ( -- * Settings
    TLSSettings
  , tlsSettings
  , tlsSettingsChain
  , tlsSettingsMemory
  , tlsSettingsChainMemory
  , tlsSettingsSni
  , tlsWantClientCert
  , tlsRequireClientCert
  , tlsSessionTickets
  , tlsKernel
  , tlsMinVersion13
  , tlsRequireSniMatch
    -- * Running
  , runTLS
  , runTLSSocket
    -- * What a request's connection negotiated
  , getTLSInfo
  , TLSInfo (..)
  , clientCertificate
  ) where

import Data.ByteString (ByteString)
import qualified Data.ByteString as B
import Network.Socket (Socket)
import Network.Wai (Application)

import Network.Wai.Handler.WarpCore (Settings, clientCertificate, getTLSInfo, runSettings, runSettingsSocket, setTLSConfig)
import Network.WarpCore.Request (TLSInfo (..))
import Network.WarpCore.TLS (Certificate (..), ClientAuth (..), TLSConfig, tlsConfig)
import qualified Network.WarpCore.TLS as T

-- | How the listener speaks TLS: the setup, and intermediate certificate
-- files to join to the first certificate's when the server starts.
data TLSSettings = TLSSettings TLSConfig [FilePath]
  deriving (Eq, Show)

-- | A certificate file and its key file (PEM), read when the server starts.
tlsSettings :: FilePath -> FilePath -> TLSSettings
tlsSettings cert key = TLSSettings (tlsConfig (CertificateFiles cert key)) []

-- | A certificate file, the files of its chain (intermediates, in order) and
-- the key file. The library takes one chain per certificate: with
-- intermediates, the files are read and joined when the server starts (not
-- again at a reload).
tlsSettingsChain :: FilePath -> [FilePath] -> FilePath -> TLSSettings
tlsSettingsChain cert chain key = TLSSettings (tlsConfig (CertificateFiles cert key)) chain

-- | A certificate and its key as PEM text.
tlsSettingsMemory :: ByteString -> ByteString -> TLSSettings
tlsSettingsMemory cert key = TLSSettings (tlsConfig (CertificateMemory cert key)) []

-- | A certificate, its chain and its key as PEM text.
tlsSettingsChainMemory :: ByteString -> [ByteString] -> ByteString -> TLSSettings
tlsSettingsChainMemory cert chain key = tlsSettingsMemory (B.concat (map ensureNewline (cert : chain))) key

-- | More certificates (each a certificate file and its key file), chosen by
-- the name a client asks for (SNI); the first setting's is the default.
tlsSettingsSni :: TLSSettings -> [(FilePath, FilePath)] -> TLSSettings
tlsSettingsSni (TLSSettings c chain) more = TLSSettings c {T.tlsCertificates = T.tlsCertificates c ++ [CertificateFiles a b | (a, b) <- more]} chain

-- | Ask clients for a certificate, checked against the CA certificates in
-- this PEM file (warp-tls's @tlsWantClientCert = True@); clients without
-- one are served too.
tlsWantClientCert :: FilePath -> TLSSettings -> TLSSettings
tlsWantClientCert ca (TLSSettings c chain) = TLSSettings c {T.tlsClientAuth = OptionalClientAuth ca} chain

-- | Require a client certificate that verifies against the CA certificates
-- in this PEM file: the handshake fails without one.
tlsRequireClientCert :: FilePath -> TLSSettings -> TLSSettings
tlsRequireClientCert ca (TLSSettings c chain) = TLSSettings c {T.tlsClientAuth = RequiredClientAuth ca} chain

-- | Session resumption by tickets (default on).
tlsSessionTickets :: Bool -> TLSSettings -> TLSSettings
tlsSessionTickets on (TLSSettings c chain) = TLSSettings c {T.tlsSessionTickets = on} chain

-- | Kernel TLS after the handshake, where the kernel has it (default on).
tlsKernel :: Bool -> TLSSettings -> TLSSettings
tlsKernel on (TLSSettings c chain) = TLSSettings c {T.tlsKernel = on} chain

-- | Accept TLS 1.3 only (the default accepts 1.2 and 1.3).
tlsMinVersion13 :: TLSSettings -> TLSSettings
tlsMinVersion13 (TLSSettings c chain) = TLSSettings c {T.tlsMinVersion = 0x0304} chain

-- | Refuse (@unrecognized_name@) a client that asks for a name none of the
-- certificates has, or for none (by default it gets the first certificate).
tlsRequireSniMatch :: Bool -> TLSSettings -> TLSSettings
tlsRequireSniMatch on (TLSSettings c chain) = TLSSettings c {T.tlsRequireSniMatch = on} chain

-- | Runs the application over TLS on the port and host of the settings, as
-- 'Network.Wai.Handler.WarpCore.runSettings' does over plain HTTP. A bad
-- certificate or key throws 'Network.WarpCore.WarpCoreError' naming it.
runTLS :: TLSSettings -> Settings -> Application -> IO ()
runTLS t s app = do
  c <- resolve t
  runSettings (setTLSConfig (Just c) s) app

-- | Runs the application over TLS on a listening socket the program opened
-- (see 'Network.Wai.Handler.WarpCore.runSettingsSocket').
runTLSSocket :: TLSSettings -> Settings -> Socket -> Application -> IO ()
runTLSSocket t s sock app = do
  c <- resolve t
  runSettingsSocket (setTLSConfig (Just c) s) sock app

-- The setup, with the intermediates joined to the first certificate.
resolve :: TLSSettings -> IO TLSConfig
resolve (TLSSettings c []) = pure c
resolve (TLSSettings c chain) = case T.tlsCertificates c of
  CertificateFiles cert key : rest -> do
    pems <- mapM B.readFile (cert : chain)
    k <- B.readFile key
    pure c {T.tlsCertificates = CertificateMemory (B.concat (map ensureNewline pems)) k : rest}
  _ -> pure c

ensureNewline :: ByteString -> ByteString
ensureNewline b = if B.null b || B.last b == 10 then b else B.snoc b 10
