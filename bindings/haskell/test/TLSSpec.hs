{-# LANGUAGE OverloadedStrings #-}
{-# LANGUAGE ScopedTypeVariables #-}
-- | HTTPS from Haskell: runTLS with tlsSettings (named like warp-tls's)
-- serves a WAI application to curl, which sees isSecure; the core binding's
-- configTLS; a bad key refused with WARPCORE_RESULT_TLS naming the file; a
-- reload that reads new certificate files. Certificates are made at test
-- time with openssl(1).
module TLSSpec (spec) where

import Control.Concurrent (newEmptyMVar, putMVar, takeMVar)
import Control.Concurrent.Async (withAsync)
import Control.Exception (try)
import Data.List (isInfixOf)
import Network.HTTP.Types (status200)
import Network.Wai (Application, isSecure, responseLBS)
import System.Directory (copyFile, createDirectoryIfMissing, getTemporaryDirectory, removeDirectoryRecursive)
import System.Exit (ExitCode (..))
import System.FilePath ((</>))
import System.Process (readProcessWithExitCode)
import Test.Hspec

import Network.Wai.Handler.WarpCore (defaultSettings, setHost, setOnReady, setPort)
import Network.Wai.Handler.WarpCoreTLS (runTLS, tlsSettings)
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

withPki :: (FilePath -> IO a) -> IO a
withPki act = do
  tmp <- getTemporaryDirectory
  let dir = tmp </> "warpcore-hs-tls"
  createDirectoryIfMissing True dir
  makeCert dir "a"
  makeCert dir "b"
  r <- act dir
  removeDirectoryRecursive dir
  pure r

-- GET https://localhost:PORT/ with curl trusting DIR/TRUST.pem: the body, or Nothing.
curlGet :: FilePath -> String -> Int -> IO (Maybe String)
curlGet dir trust port = do
  (code, out, _) <-
    readProcessWithExitCode
      "curl"
      [ "-s", "--max-time", "10", "--cacert", dir </> (trust ++ ".pem")
      , "--resolve", "localhost:" ++ show port ++ ":127.0.0.1", "https://localhost:" ++ show port ++ "/" ]
      ""
  pure (if code == ExitSuccess then Just out else Nothing)

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
