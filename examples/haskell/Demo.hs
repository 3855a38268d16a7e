{-# LANGUAGE OverloadedStrings #-}
-- | The demo server of DESIGN.md as a WAI application on libwarpcore:
--
-- * @GET /@ → @200 Hello, World!@ (text/plain)
-- * @POST /echo@ → @200@ with the request body as it arrives (any size: a
--   body over 64 KiB streams, 'getRequestBodyChunk' chunk by chunk, each
--   chunk written back at once, with the request's @Content-Length@ when it
--   had one, else chunked)
-- * @GET /ws@ → a WebSocket echo (text back as text, binary as binary, the
--   close answered), written with wai-websockets as for Warp
--   ('websocketsOr' over 'responseRaw'); a request to it that is not a
--   WebSocket handshake gets @400@
-- * @PREFIX/...@ → files under @DIR@ (@--static PREFIX=DIR@, repeatable),
--   served by the library's static mounts (the application never sees them)
--
-- Flags: @--host H --port N --workers N --static PREFIX=DIR@, and
-- @--dispatch Dispatcher|ForkInCallback|InCallback@ to compare the ways a
-- request reaches Haskell, and @--sched-batch off@ to leave the threads'
-- scheduling policy alone ('setSchedBatch'), @--tls-cert FILE --tls-key FILE@
-- to serve HTTPS ('runTLS' of "Network.Wai.Handler.WarpCoreTLS"). Prints @listening on HOST:PORT@ once it accepts
-- connections; SIGTERM or SIGINT stop it gracefully with exit status 0.
--
-- Build: @make haskell@ (→ @build/demo-hs@). @--workers N@ also sets the
-- number of capabilities to N (like Warp's @+RTS -NN@).
module Main (main) where

import Control.Concurrent (setNumCapabilities)
import Control.Exception (catch, throwIO)
import Control.Monad (forever, unless, when)
import qualified Data.ByteString as B
import qualified Data.ByteString.Builder as BB
import qualified Data.ByteString.Char8 as B8
import Data.List (isPrefixOf)
import Data.String (fromString)
import Network.HTTP.Types
import Network.Wai
import Network.Wai.Handler.WarpCore
import Network.Wai.Handler.WarpCoreTLS (runTLS, tlsSettings)
import Network.Wai.Handler.WebSockets (websocketsOr)
import qualified Network.WebSockets as WS
import System.Environment (getArgs)
import System.Exit (exitWith, ExitCode (..))
import System.IO (hFlush, hPutStrLn, stderr, stdout)
import System.Posix.Signals (Handler (Catch), installHandler, sigINT, sigTERM)
import Text.Read (readMaybe)

data Options = Options
  { optHost :: String
  , optPort :: Int
  , optWorkers :: Int
  , optStatic :: [(String, FilePath)]
  , optDispatch :: Dispatch
  , optSchedBatch :: Bool
  , optTlsCert :: Maybe FilePath
  , optTlsKey :: Maybe FilePath
  }

parse :: Options -> [String] -> Either String Options
parse o [] = Right o
parse o ("--host" : h : rest) = parse o {optHost = h} rest
parse o ("--port" : p : rest)
  | Just n <- readMaybe p, n >= 0, n < 65536 = parse o {optPort = n} rest
parse o ("--workers" : w : rest)
  | Just n <- readMaybe w, n >= 0, n <= 1024 = parse o {optWorkers = n} rest
parse o ("--static" : spec : rest)
  | (prefix, '=' : dir) <- break (== '=') spec, "/" `isPrefixOf` prefix, not (null dir) =
      parse o {optStatic = optStatic o ++ [(prefix, dir)]} rest
parse o ("--dispatch" : d : rest)
  | Just m <- readMaybe d = parse o {optDispatch = m} rest
parse o ("--sched-batch" : "on" : rest) = parse o {optSchedBatch = True} rest
parse o ("--sched-batch" : "off" : rest) = parse o {optSchedBatch = False} rest
parse o ("--tls-cert" : f : rest) = parse o {optTlsCert = Just f} rest
parse o ("--tls-key" : f : rest) = parse o {optTlsKey = Just f} rest
parse _ (arg : _) = Left ("bad argument: " ++ arg)

main :: IO ()
main = do
  args <- getArgs
  opts <- case parse (Options "127.0.0.1" 8080 0 [] Dispatcher True Nothing Nothing) args of
    Right o | (optTlsCert o == Nothing) /= (optTlsKey o == Nothing) -> do
      hPutStrLn stderr "--tls-cert and --tls-key go together"
      exitWith (ExitFailure 2)
    Right o -> pure o
    Left err -> do
      hPutStrLn stderr err
      hPutStrLn stderr "usage: demo-hs [--host H] [--port N] [--workers N] [--static PREFIX=DIR]... [--dispatch MODE] [--sched-batch on|off] [--tls-cert FILE --tls-key FILE]"
      exitWith (ExitFailure 2)
  when (optWorkers opts > 0) $ setNumCapabilities (optWorkers opts)
  let host = optHost opts
      shown = if ':' `elem` host then "[" ++ host ++ "]" else host
      settings =
        setHost (fromString host)
          . setPort (optPort opts)
          . (if optWorkers opts > 0 then setWorkers (optWorkers opts) else id)
          . setDispatch (optDispatch opts)
          -- Uploads of any size (Warp has no limit either), streamed past 64 KiB.
          . setWholeBodyMax (64 * 1024)
          . setSchedBatch (optSchedBatch opts)
          . foldr (\(prefix, dir) k -> setStaticMount (B8.pack prefix) dir . k) id (optStatic opts)
          . setGracefulShutdownTimeout (Just 5)
          . setInstallShutdownHandler
            ( \stop -> do
                _ <- installHandler sigTERM (Catch stop) Nothing
                _ <- installHandler sigINT (Catch stop) Nothing
                pure ()
            )
          . setOnReady (\port -> putStrLn ("listening on " ++ shown ++ ":" ++ show port) >> hFlush stdout)
          $ defaultSettings
  case (optTlsCert opts, optTlsKey opts) of
    (Just cert, Just key) -> runTLS (tlsSettings cert key) settings app
    _ -> runSettings settings app

app :: Application
-- Routes on the decoded path, as the C and Python demos do: @POST /%65cho@
-- is the echo too.
app req respond = case (requestMethod req, pathInfo req) of
  (m, [])
    | m == methodGet || m == methodHead -> respond hello
    | otherwise -> respond (notAllowed "GET, HEAD")
  (m, ["echo"])
    | m == methodPost -> respond (echo req)
    | otherwise -> respond (notAllowed "POST")
  (m, ["ws"])
    | m == methodGet -> websocketsOr WS.defaultConnectionOptions wsEcho notHandshake req respond
    | otherwise -> respond (notAllowed "GET")
  _ -> respond notFound

hello :: Response
hello = responseLBS status200 [(hContentType, "text/plain"), (hContentLength, "13")] "Hello, World!"

notFound :: Response
notFound = responseLBS status404 [(hContentType, "text/plain")] "Not Found\n"

notAllowed :: B.ByteString -> Response
notAllowed allow = responseLBS status405 [(hContentType, "text/plain"), ("Allow", allow)] "Method Not Allowed\n"

-- | Each message back as it came; the peer's close is answered (by
-- 'WS.receiveDataMessage') and ends the connection.
wsEcho :: WS.ServerApp
wsEcho pending = do
  conn <- WS.acceptRequest pending
  forever (WS.receiveDataMessage conn >>= WS.sendDataMessage conn) `catch` \e -> case e of
    WS.CloseRequest _ _ -> pure ()
    WS.ConnectionClosed -> pure ()
    _ -> throwIO e

notHandshake :: Application
notHandshake _ respond =
  respond (responseLBS status400 [(hContentType, "text/plain")] "a WebSocket handshake is expected here\n")

-- | The request body back as it arrives: each chunk read is written and
-- flushed before the next is read (the write waits while the client does
-- not read, and the library stops reading the upload meanwhile).
echo :: Request -> Response
echo req = responseStream status200 headers $ \write flush ->
  let loop = do
        chunk <- getRequestBodyChunk req
        unless (B.null chunk) $ write (BB.byteString chunk) >> flush >> loop
   in loop
  where
    headers = (hContentType, "application/octet-stream") : case requestBodyLength req of
      KnownLength n -> [(hContentLength, B8.pack (show n))]
      ChunkedBody -> []
