{-# LANGUAGE OverloadedStrings #-}
-- | The Warp peer of @make bench-compare@ (benches/harness/bench.py).
--
-- Usage: @warp-hello PORT DOCROOT +RTS -N1 -RTS@
--
-- * @GET /@ → 200 @Hello, World!@ (text/plain, explicit Content-Length)
-- * @GET /static/NAME@ → the file DOCROOT/NAME through Warp's own
--   'responseFile' (its sendfile path, with its fd and file-info caches)
-- * anything else → 404
--
-- Binds 127.0.0.1 only. The idle timeout is 300 s so that the idle-connection
-- probe is not cut short.
module Main (main) where

import qualified Data.ByteString.Char8 as B8
import qualified Data.ByteString.Lazy.Char8 as L
import Network.HTTP.Types (hContentLength, hContentType, status200, status404)
import Network.Wai
import Network.Wai.Handler.Warp
import System.Directory (doesFileExist)
import System.Environment (getArgs)
import System.IO (hPutStrLn, stderr)

app :: FilePath -> Application
app root req respond = case rawPathInfo req of
  "/" -> respond $ responseLBS status200 [(hContentType, "text/plain"), (hContentLength, "13")] "Hello, World!"
  path
    | Just name <- B8.stripPrefix "/static/" path
    , not (B8.null name)
    , not (".." `B8.isInfixOf` name) -> do
        let file = root ++ "/" ++ B8.unpack name
        exists <- doesFileExist file
        respond $
          if exists
            then responseFile status200 [(hContentType, "application/octet-stream")] file Nothing
            else notFound
  _ -> respond notFound
  where
    notFound = responseLBS status404 [(hContentType, "text/plain")] (L.pack "Not Found\n")

main :: IO ()
main = do
  args <- getArgs
  (port, root) <- case args of
    [p, r] -> pure (read p, r)
    _ -> ioError (userError "usage: warp-hello PORT DOCROOT")
  hPutStrLn stderr ("warp-hello: http://127.0.0.1:" ++ show port ++ "/")
  runSettings (setPort port . setHost "127.0.0.1" . setTimeout 300 $ defaultSettings) (app root)
