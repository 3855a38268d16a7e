{-# LANGUAGE OverloadedStrings #-}
-- | examples/haskell/Demo.hs as built by `make haskell` (WARPCORE_DEMO_HS):
-- the demo of DESIGN.md, its flags, and a clean exit on SIGTERM.
module DemoSpec (spec) where

import Text.Printf (printf)
import System.IO (hPutStrLn, stderr)
import Upload (Echo (..), shouldEchoWhole, uploadEcho)

import Control.Exception (bracket, try)
import Data.Text (Text)
import qualified Network.WebSockets as WS
import qualified Data.ByteString.Lazy as L
import Data.List (isPrefixOf)
import Network.HTTP.Client (responseBody, responseHeaders, responseStatus)
import qualified Network.HTTP.Types as H
import System.Directory (createDirectoryIfMissing, doesFileExist, getTemporaryDirectory, removeDirectoryRecursive)
import System.Environment (lookupEnv)
import System.Exit (ExitCode (..))
import System.FilePath ((</>))
import System.IO (hGetLine)
import System.Process
import Test.Hspec

import Util

demoPath :: IO FilePath
demoPath = do
  path <- maybe "../../build/demo-hs" id <$> lookupEnv "WARPCORE_DEMO_HS"
  exists <- doesFileExist path
  if exists then pure path else fail ("the demo is not built at " ++ path ++ " (make haskell)")

-- | Runs the demo (2 workers) on a free port for the duration of an action.
withDemo :: [String] -> (Int -> IO a) -> IO a
withDemo extra act = do
  demo <- demoPath
  let args = ["--host", "127.0.0.1", "--port", "0", "--workers", "2"] ++ extra
      create = createProcess (proc demo args) {std_out = CreatePipe}
      cleanup (_, _, _, ph) = terminateProcess ph >> waitForProcess ph
  bracket create cleanup $ \(_, Just out, _, _) -> do
    line <- hGetLine out
    line `shouldSatisfy` ("listening on 127.0.0.1:" `isPrefixOf`)
    act (read (drop (length ("listening on 127.0.0.1:" :: String)) line))

kind :: WS.DataMessage -> IO (String, L.ByteString)
kind (WS.Text bytes _) = pure ("text", bytes)
kind (WS.Binary bytes) = pure ("binary", bytes)

spec :: Spec
spec = describe "examples/haskell/Demo.hs" $ do
  it "echoes a 1 GiB upload through POST /echo as it arrives, SHA-256 checked" $ boundedFor 600 $
    withDemo [] $ \port -> do
      let total = 1024 * 1024 * 1024
      e <- uploadEcho port "/echo" False total
      e `shouldEchoWhole` total
      -- The echo began long before the upload ended (not collected first).
      echoSentAtFirstByte e `shouldSatisfy` (< 64 * 1024 * 1024)
      hPutStrLn stderr (printf "      1 GiB through build/demo-hs POST /echo: %.1f s (%.0f MiB/s), first byte back after %d KiB sent" (echoSeconds e) (1024 / echoSeconds e) (echoSentAtFirstByte e `div` 1024))

  it "echoes WebSocket messages on GET /ws and answers the close" $ bounded $
    withDemo [] $ \port -> do
      closing <- WS.runClient "127.0.0.1" port "/ws" $ \conn -> do
        WS.sendTextData conn ("hello" :: Text)
        (WS.receiveDataMessage conn >>= kind) `shouldReturn` ("text", "hello")
        WS.sendBinaryData conn (L.replicate 300000 7)
        (WS.receiveDataMessage conn >>= kind) `shouldReturn` ("binary", L.replicate 300000 7)
        WS.sendClose conn ("bye" :: Text)
        try (WS.receiveDataMessage conn)
      case closing of
        Left (WS.CloseRequest code _) -> code `shouldBe` 1000
        other -> expectationFailure ("expected the close answered, got " ++ show other)
      (H.statusCode . responseStatus <$> get port "/ws") `shouldReturn` 400
      (H.statusCode . responseStatus <$> post port "/ws" "") `shouldReturn` 405

  it "serves GET /, POST /echo and a static mount, and exits 0 on SIGTERM" $ bounded $ do
    demo <- demoPath
    tmp <- getTemporaryDirectory
    let dir = tmp </> "warpcore-hs-demo-static"
    createDirectoryIfMissing True (dir </> "sub")
    writeFile (dir </> "sub" </> "a.txt") "static text"
    let args = ["--host", "127.0.0.1", "--port", "0", "--workers", "2", "--static", "/files=" ++ dir]
        create = createProcess (proc demo args) {std_out = CreatePipe}
        cleanup (_, _, _, ph) = terminateProcess ph >> removeDirectoryRecursive dir
    bracket create cleanup $ \(_, Just out, _, ph) -> do
      line <- hGetLine out
      line `shouldSatisfy` ("listening on 127.0.0.1:" `isPrefixOf`)
      let port = read (drop (length ("listening on 127.0.0.1:" :: String)) line)
      hello <- get port "/"
      responseBody hello `shouldBe` "Hello, World!"
      lookup "Content-Type" (responseHeaders hello) `shouldBe` Just "text/plain"
      (responseBody <$> post port "/echo" (L.replicate 100000 5)) `shouldReturn` L.replicate 100000 5
      -- Routed on the decoded path, as the C and Python demos.
      (responseBody <$> post port "/%65cho" "decoded") `shouldReturn` "decoded"
      (H.statusCode . responseStatus <$> post port "/%2Fecho" "x") `shouldReturn` 404
      file <- get port "/files/sub/a.txt"
      responseBody file `shouldBe` "static text"
      lookup "Content-Type" (responseHeaders file) `shouldBe` Just "text/plain; charset=utf-8"
      (H.statusCode . responseStatus <$> get port "/files/sub/../../etc/passwd") >>= (`shouldSatisfy` (`elem` [400, 404]))
      (H.statusCode . responseStatus <$> get port "/files/missing") `shouldReturn` 404
      (H.statusCode . responseStatus <$> get port "/nope") `shouldReturn` 404
      (H.statusCode . responseStatus <$> post port "/" "") `shouldReturn` 405
      terminateProcess ph
      waitForProcess ph `shouldReturn` ExitSuccess
