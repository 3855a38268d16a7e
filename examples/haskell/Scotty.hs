{-# LANGUAGE OverloadedStrings #-}
-- | A Scotty application served by libwarpcore: Scotty builds a WAI
-- 'Application', Network.Wai.Handler.WarpCore runs it where Warp would.
--
--   build/scotty-hs --port 3000
--   curl localhost:3000/hello/you        → hello, you
--   curl -d 'some text' localhost:3000/reverse → txet emos
--
-- Build: make haskell (→ build/scotty-hs). Stops on SIGTERM or SIGINT.
module Main (main) where

import qualified Data.ByteString.Lazy as L
import Data.String (fromString)
import Network.Wai.Handler.WarpCore
import System.Environment (getArgs)
import System.IO (hFlush, stdout)
import System.Posix.Signals (Handler (Catch), installHandler, sigINT, sigTERM)
import qualified Web.Scotty as S

main :: IO ()
main = do
  args <- getArgs
  let port = case dropWhile (/= "--port") args of
        (_ : p : _) -> read p
        _ -> 3000
      host = case dropWhile (/= "--host") args of
        (_ : h : _) -> h
        _ -> "127.0.0.1"
  app <- S.scottyApp $ do
    S.get "/hello/:name" $ do
      name <- S.param "name"
      S.text ("hello, " <> name)
    S.post "/reverse" $ do
      body <- S.body
      S.raw (L.reverse body)
  let settings =
        setHost (fromString host)
          . setPort port
          . setOnReady (\p -> putStrLn ("listening on " ++ host ++ ":" ++ show p) >> hFlush stdout)
          . setInstallShutdownHandler (\stop -> mapM_ (\s -> installHandler s (Catch stop) Nothing) [sigTERM, sigINT])
          $ defaultSettings
  runSettings settings app
