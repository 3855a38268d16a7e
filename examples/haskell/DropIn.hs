{-# LANGUAGE CPP #-}
{-# LANGUAGE OverloadedStrings #-}
-- | Five WAI applications, built unchanged against libwarpcore
-- (build/dropin-hs) and against Warp itself (build/dropin-warp, with
-- -DWARP): the import below is the only difference. The Haskell tests
-- (DropInSpec) drive both builds with the same requests and compare the
-- answers.
--
--   build/dropin-hs scotty           a Scotty application (routes, captures, JSON, a status of its own)
--   build/dropin-hs static DIR       wai-app-static's file server on DIR
--   build/dropin-hs extra            wai-extra middleware: gzip, autohead, request logging (stderr)
--   build/dropin-hs websockets       wai-websockets: an echo over responseRaw, a fallback page
--   build/dropin-hs stream           a plain WAI application: streamed request bodies, responseStream,
--                                    responseRaw, pauseTimeout, statusMessage, remoteHost, vault
--
-- Each listens on a free port of 127.0.0.1 (openFreePort, runSettingsSocket),
-- prints "listening on PORT" and stops on SIGTERM.
--
-- Build: make haskell.
module Main (main) where

import Control.Concurrent (threadDelay)
import Control.Exception (bracket)
import Control.Monad (unless)
import qualified Crypto.Hash as Hash
import qualified Data.ByteString as B
import qualified Data.ByteString.Builder as BB
import qualified Data.ByteString.Char8 as B8
import qualified Data.ByteString.Lazy.Char8 as L8
import Data.IORef
import qualified Data.Text.Lazy as TL
import qualified Network.HTTP.Types as H
import Network.Socket (SockAddr (..), close)
import Network.Wai
import Network.Wai.Application.Static (defaultFileServerSettings, staticApp)
#ifdef WARP
import Network.Wai.Handler.Warp
#else
import Network.Wai.Handler.WarpCore
#endif
import Network.Wai.Handler.WebSockets (websocketsOr)
import Network.Wai.Middleware.Autohead (autohead)
import Network.Wai.Middleware.Gzip (def, gzip)
import Network.Wai.Middleware.RequestLogger (logStdoutDev)
import qualified Network.WebSockets as WS
import System.Environment (getArgs)
import System.Exit (exitFailure)
import System.IO (hFlush, hPutStrLn, stderr, stdout)
import System.Posix.Signals (Handler (Catch), installHandler, sigINT, sigTERM)
import qualified Web.Scotty as S

main :: IO ()
main = do
  args <- getArgs
  app <- case args of
    ["scotty"] -> scotty
    ["static", dir] -> pure (staticApp (defaultFileServerSettings dir))
    ["extra"] -> pure (logStdoutDev (autohead (gzip def plain)))
    ["websockets"] -> pure (websocketsOr WS.defaultConnectionOptions echo (\_ respond -> respond page))
    ["stream"] -> pure streaming
    _ -> hPutStrLn stderr "usage: dropin (scotty | static DIR | extra | websockets | stream)" >> exitFailure
  bracket openFreePort (close . snd) $ \(port, sock) -> do
    let settings =
          setBeforeMainLoop (putStrLn ("listening on " ++ show port) >> hFlush stdout)
            . setInstallShutdownHandler (\stop -> mapM_ (\s -> installHandler s (Catch stop) Nothing) [sigTERM, sigINT])
            . setTimeout 2
            $ defaultSettings
    runSettingsSocket settings sock app

scotty :: IO Application
scotty = S.scottyApp $ do
  S.get "/hello/:name" $ do
    name <- S.param "name"
    S.text ("hello " <> name)
  S.post "/length" $ do
    body <- S.body
    S.json (L8.length body)
  S.get "/teapot" $ do
    S.status (H.mkStatus 418 "I'm a teapot")
    S.text "short and stout"
  S.get "/query" $ do
    n <- S.param "n" `S.rescue` \_ -> pure (0 :: Int)
    S.text (TL.pack (show (n * 2)))

plain :: Application
plain req respond = respond $ case pathInfo req of
  ["big"] -> responseLBS H.ok200 [(H.hContentType, "text/plain")] (L8.concat (replicate 2000 "compressible text, "))
  ["small"] -> responseLBS H.ok200 [(H.hContentType, "text/plain")] "tiny"
  _ -> responseLBS H.notFound404 [(H.hContentType, "text/plain")] "not here"

page :: Response
page = responseLBS H.ok200 [(H.hContentType, "text/plain")] "not a websocket"

echo :: WS.ServerApp
echo pending = do
  conn <- WS.acceptRequest pending
  let loop = do
        msg <- WS.receiveDataMessage conn
        WS.sendDataMessage conn msg
        loop
  loop

-- A plain WAI application over the parts of Warp's behaviour a handler
-- must reproduce.
streaming :: Application
streaming req respond = case (requestMethod req, pathInfo req) of
  ("POST", ["sha256"]) -> do
    -- The body as it streams: its length and SHA-256.
    ctx <- newIORef (Hash.hashInit :: Hash.Context Hash.SHA256)
    total <- newIORef (0 :: Int)
    let loop = do
          chunk <- getRequestBodyChunk req
          unless (B.null chunk) $ do
            modifyIORef' ctx (`Hash.hashUpdate` chunk)
            modifyIORef' total (+ B.length chunk)
            loop
    loop
    digest <- Hash.hashFinalize <$> readIORef ctx
    n <- readIORef total
    respond (responseLBS H.ok200 [] (L8.pack (show n ++ " " ++ show digest)))
  ("POST", ["echo"]) ->
    respond $ responseStream H.ok200 [(H.hContentType, "application/octet-stream")] $ \write flush ->
      let loop = do
            chunk <- getRequestBodyChunk req
            unless (B.null chunk) (write (BB.byteString chunk) >> flush >> loop)
       in loop
  ("GET", ["status"]) -> respond (responseLBS (H.mkStatus 299 "Quite Fine") [] "custom")
  ("GET", ["slow"]) -> do
    -- Longer than the 2 s timeout: Warp and warpcore both let it finish.
    pauseTimeout req
    threadDelay 3500000
    respond (responseLBS H.ok200 [] "paused")
  ("GET", ["peer"]) -> respond (responseLBS H.ok200 [] (L8.pack (hostOf (remoteHost req))))
  ("GET", ["raw"]) ->
    respond $ flip responseRaw (responseLBS H.badRequest400 [] "no upgrade") $ \recv send -> do
      send "HTTP/1.1 101 Switching Protocols\r\nUpgrade: shout\r\nConnection: Upgrade\r\n\r\n"
      let loop = do
            bytes <- recv
            unless (B.null bytes) (send (B8.map upper bytes) >> loop)
      loop
  ("GET", ["stream"]) ->
    respond $ responseStream H.ok200 [] $ \write flush -> do
      mapM_ (\i -> write (BB.intDec i <> "\n") >> flush) [1 .. 100 :: Int]
  _ -> respond (responseLBS H.notFound404 [] "none")
  where
    upper c = if c >= 'a' && c <= 'z' then toEnum (fromEnum c - 32) else c
    hostOf (SockAddrInet _ a) = takeWhile (/= ':') (show (SockAddrInet 0 a))
    hostOf other = show other
