{-# LANGUAGE OverloadedStrings #-}
{-# LANGUAGE ScopedTypeVariables #-}
-- | HTTPS from Haskell: runTLS with tlsSettings (named like warp-tls's)
-- serves a WAI application to curl, which sees isSecure; what a request's
-- connection negotiated (getTLSInfo, Warp's clientCertificate) with and
-- without a client certificate, through the dispatcher and the callback
-- paths; the core binding's configTLS; a bad key refused with
-- WARPCORE_RESULT_TLS naming the file; a reload that reads new certificate
-- files. Certificates are made at test time with openssl(1).
module TLSSpec (spec) where

import Control.Concurrent (newEmptyMVar, putMVar, takeMVar)
import Control.Concurrent.Async (withAsync)
import Control.Exception (try)
import qualified Data.ByteString as B
import Data.IORef (newIORef, readIORef, writeIORef)
import Data.List (isInfixOf)
import Data.X509 (CertificateChain (..), encodeSignedObject)
import Network.HTTP.Types (status200)
import Network.Wai (Application, Request, isSecure, responseLBS)
import System.Directory (copyFile, createDirectoryIfMissing, getTemporaryDirectory, removeDirectoryRecursive)
import System.Exit (ExitCode (..))
import System.FilePath ((</>))
import System.Posix.Process (getProcessID)
import System.Process (readProcessWithExitCode)
import Test.Hspec

import Network.Wai.Handler.WarpCore (Dispatch (..), defaultSettings, runSettings, setDispatch, setHost, setOnReady, setPort)
import Network.Wai.Handler.WarpCoreTLS (TLSInfo (..), clientCertificate, getTLSInfo, runTLS, tlsRequireClientCert, tlsSettings, tlsWantClientCert)
import qualified Network.WarpCore as WC
import Util (bounded, localConfig)

-- An ECDSA P-256 certificate for localhost: DIR/NAME.pem and DIR/NAME.key.
makeCert :: FilePath -> String -> IO ()
makeCert dir name = do
  (code, _, err) <-
    readProcessWithExitCode
      "openssl"
      [ "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"
      , "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"
      , "-keyout", dir </> (name ++ ".key"), "-out", dir </> (name ++ ".pem") ]
      ""
  if code /= ExitSuccess then putStrLn err else pure ()
  code `shouldBe` ExitSuccess

openssl :: [String] -> IO ()
openssl args = do
  (code, _, err) <- readProcessWithExitCode "openssl" args ""
  if code /= ExitSuccess then putStrLn err else pure ()
  code `shouldBe` ExitSuccess

-- A CA (DIR/ca.pem) and a client certificate it signs (DIR/client.pem,
-- DIR/client.key, CN=client), and the client certificate as DER (DIR/client.der).
makeClientCert :: FilePath -> IO ()
makeClientCert dir = do
  let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
      f name = dir </> name
  openssl (["req", "-x509"] ++ ec ++ ["-days", "2", "-subj", "/CN=test CA", "-keyout", f "ca.key", "-out", f "ca.pem"])
  openssl (["req"] ++ ec ++ ["-subj", "/CN=client", "-keyout", f "client.key", "-out", f "client.csr"])
  writeFile (f "client.ext") "extendedKeyUsage=clientAuth\n"
  openssl
    [ "x509", "-req", "-in", f "client.csr", "-CA", f "ca.pem", "-CAkey", f "ca.key", "-CAcreateserial", "-days", "2"
    , "-extfile", f "client.ext", "-out", f "client.pem" ]
  openssl ["x509", "-in", f "client.pem", "-outform", "DER", "-out", f "client.der"]

withPki :: (FilePath -> IO a) -> IO a
withPki act = do
  tmp <- getTemporaryDirectory
  pid <- getProcessID
  -- This process's own: another test run may be making its certificates.
  let dir = tmp </> ("warpcore-hs-tls-" ++ show pid)
  createDirectoryIfMissing True dir
  makeCert dir "a"
  makeCert dir "b"
  makeClientCert dir
  r <- act dir
  removeDirectoryRecursive dir
  pure r

-- GET https://localhost:PORT/ with curl trusting DIR/TRUST.pem: the body, or Nothing.
curlGet :: FilePath -> String -> Int -> IO (Maybe String)
curlGet dir trust port = curlWith [] dir trust port

-- The same with more curl arguments.
curlWith :: [String] -> FilePath -> String -> Int -> IO (Maybe String)
curlWith more dir trust port = do
  (code, out, _) <-
    readProcessWithExitCode
      "curl"
      ( [ "-s", "--max-time", "10", "--cacert", dir </> (trust ++ ".pem")
        , "--resolve", "localhost:" ++ show port ++ ":127.0.0.1", "https://localhost:" ++ show port ++ "/" ]
          ++ more )
      ""
  pure (if code == ExitSuccess then Just out else Nothing)

-- curl's arguments for the client certificate.
withClientCert :: FilePath -> [String]
withClientCert dir = ["--cert", dir </> "client.pem", "--key", dir </> "client.key"]

-- An application that keeps the last request it was given.
keeping :: IO (Application, IO (Maybe Request))
keeping = do
  ref <- newIORef Nothing
  let app req respond = writeIORef ref (Just req) >> respond (responseLBS status200 [] "kept")
  pure (app, readIORef ref)

-- The DER of each certificate of Warp's parsed chain.
chainDer :: Maybe CertificateChain -> Maybe [B.ByteString]
chainDer = fmap (\(CertificateChain cs) -> map encodeSignedObject cs)

secureApp :: Application
secureApp req respond = respond (responseLBS status200 [] (if isSecure req then "secure" else "plain"))

spec :: Spec
spec = describe "TLS" $ do
  it "runTLS serves a WAI application over HTTPS, isSecure True" $ bounded $ withPki $ \dir -> do
    ready <- newEmptyMVar
    let settings = setOnReady (putMVar ready) (setHost "127.0.0.1" (setPort 0 defaultSettings))
    withAsync (runTLS (tlsSettings (dir </> "a.pem") (dir </> "a.key")) settings secureApp) $ \_ -> do
      port <- takeMVar ready
      curlGet dir "a" port `shouldReturn` Just "secure"

  describe "what a request's connection negotiated" $
    mapM_
      ( \dispatch -> it ("getTLSInfo and clientCertificate, with and without a client certificate (" ++ show dispatch ++ ")") $ bounded $ withPki $ \dir -> do
          (app, lastRequest) <- keeping
          ready <- newEmptyMVar
          clientDer <- B.readFile (dir </> "client.der")
          let settings = setDispatch dispatch (setOnReady (putMVar ready) (setHost "127.0.0.1" (setPort 0 defaultSettings)))
              tls = tlsWantClientCert (dir </> "ca.pem") (tlsSettings (dir </> "a.pem") (dir </> "a.key"))
          withAsync (runTLS tls settings app) $ \_ -> do
            port <- takeMVar ready
            curlWith (withClientCert dir) dir "a" port `shouldReturn` Just "kept"
            Just req <- lastRequest
            isSecure req `shouldBe` True
            let Just t = getTLSInfo req
            (tlsMajorVersion t, tlsMinorVersion t) `shouldBe` (3, 4)
            tlsCipherID t `shouldSatisfy` (`elem` [0x1301, 0x1302, 0x1303])
            tlsServerName t `shouldBe` Just "localhost"
            tlsNegotiatedProtocol t `shouldBe` Just "http/1.1"
            tlsResumed t `shouldBe` False
            take 1 (tlsClientCertificates t) `shouldBe` [clientDer]
            fmap (take 1) (chainDer (clientCertificate req)) `shouldBe` Just [clientDer]
            -- Without a certificate (asked for, not required), over TLS 1.2.
            curlWith ["--tls-max", "1.2"] dir "a" port `shouldReturn` Just "kept"
            Just plainClient <- lastRequest
            let Just t2 = getTLSInfo plainClient
            (tlsMajorVersion t2, tlsMinorVersion t2) `shouldBe` (3, 3)
            tlsCipherID t2 `shouldSatisfy` (`elem` [0xC02B, 0xC02C, 0xCCA9])
            tlsClientCertificates t2 `shouldBe` []
            clientCertificate plainClient `shouldBe` Nothing
      )
      [Dispatcher, ForkInCallback, InCallback]

  it "a required client certificate: refused without one, seen with one" $ bounded $ withPki $ \dir -> do
    (app, lastRequest) <- keeping
    ready <- newEmptyMVar
    clientDer <- B.readFile (dir </> "client.der")
    let settings = setOnReady (putMVar ready) (setHost "127.0.0.1" (setPort 0 defaultSettings))
        tls = tlsRequireClientCert (dir </> "ca.pem") (tlsSettings (dir </> "a.pem") (dir </> "a.key"))
    withAsync (runTLS tls settings app) $ \_ -> do
      port <- takeMVar ready
      curlGet dir "a" port `shouldReturn` Nothing
      lastRequest >>= (`shouldBe` Nothing) . fmap (const ())
      curlWith (withClientCert dir) dir "a" port `shouldReturn` Just "kept"
      Just req <- lastRequest
      fmap (take 1 . tlsClientCertificates) (getTLSInfo req) `shouldBe` Just [clientDer]

  it "a plain request has no TLS facts" $ bounded $ do
    (app, lastRequest) <- keeping
    ready <- newEmptyMVar
    let settings = setOnReady (putMVar ready) (setHost "127.0.0.1" (setPort 0 defaultSettings))
    withAsync (runSettings settings app) $ \_ -> do
      port <- takeMVar ready
      (code, out, _) <- readProcessWithExitCode "curl" ["-s", "--max-time", "10", "http://127.0.0.1:" ++ show port ++ "/"] ""
      (code, out) `shouldBe` (ExitSuccess, "kept")
      Just req <- lastRequest
      (isSecure req, fmap (const ()) (getTLSInfo req), clientCertificate req) `shouldBe` (False, Nothing, Nothing)

  it "refuses a key that is not the certificate's, naming the file" $ bounded $ withPki $ \dir -> do
    let cfg = localConfig {WC.configTLS = Just (WC.tlsConfig (WC.CertificateFiles (dir </> "a.pem") (dir </> "b.key")))}
    r <- try (WC.withServer cfg (\_ res -> WC.respond res 200 [] "x") (\_ -> pure ()))
    case r of
      Left (e :: WC.WarpCoreError) -> do
        WC.errorResult e `shouldBe` 16
        (dir </> "b.key") `shouldSatisfy` (`isInfixOf` WC.errorMessage e)
      Right () -> expectationFailure "the server started with a mismatched key"

  it "a reload reads the certificate files again" $ bounded $ withPki $ \dir -> do
    copyFile (dir </> "a.pem") (dir </> "live.pem")
    copyFile (dir </> "a.key") (dir </> "live.key")
    let cfg = localConfig {WC.configTLS = Just (WC.tlsConfig (WC.CertificateFiles (dir </> "live.pem") (dir </> "live.key")))}
        hello _ res = WC.respond res 200 [] "hello"
    WC.withServer cfg hello $ \server -> do
      let port = WC.serverPort server
      curlGet dir "a" port `shouldReturn` Just "hello"
      copyFile (dir </> "b.pem") (dir </> "live.pem")
      copyFile (dir </> "b.key") (dir </> "live.key")
      WC.reload server cfg hello
      curlGet dir "b" port `shouldReturn` Just "hello"
      curlGet dir "a" port `shouldReturn` Nothing
