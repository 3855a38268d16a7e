{-# LANGUAGE OverloadedStrings #-}
-- | examples/haskell/DropIn.hs, five WAI applications built against warpcore
-- (build/dropin-hs) and against Warp (build/dropin-warp) by changing only
-- the import: the same client script drives both builds and the answers
-- must be the same (status line with its reason phrase, the fields an
-- application or middleware chose, the body), ignoring what differs by
-- design (Date, Server, and the framing of a streamed body).
module DropInSpec (spec) where

import Control.Exception (bracket)
import Control.Monad (forM, replicateM_)
import qualified Data.ByteString as B
import qualified Data.ByteString.Char8 as B8
import qualified Data.ByteString.Lazy as L
import qualified Data.CaseInsensitive as CI
import Data.List (isPrefixOf, sort)
import Network.HTTP.Client (responseBody, responseHeaders, responseStatus)
import qualified Network.HTTP.Types as H
import qualified Network.Socket as NS
import qualified Network.Socket.ByteString as NSB
import qualified Network.WebSockets as WS
import System.Directory (doesFileExist)
import System.Environment (lookupEnv)
import System.IO (hGetLine)
import System.Process
import Test.Hspec

import Util

-- | What the client saw of one exchange, normalised.
data Seen = Seen Int B.ByteString [(B.ByteString, B.ByteString)] L.ByteString
  deriving (Eq, Show)

binary :: String -> String -> IO FilePath
binary var dflt = do
  path <- maybe dflt id <$> lookupEnv var
  exists <- doesFileExist path
  if exists then pure path else fail (path ++ " is not built (make haskell)")

-- | Runs one build of the program with `args` for the duration of an action.
withBuild :: FilePath -> [String] -> (Int -> IO a) -> IO a
withBuild exe args act = bracket create cleanup $ \(_, Just out, _, _) -> do
  line <- hGetLine out
  line `shouldSatisfy` ("listening on " `isPrefixOf`)
  act (read (drop (length ("listening on " :: String)) line))
  where
    create = createProcess (proc exe args) {std_out = CreatePipe}
    cleanup (_, _, _, ph) = terminateProcess ph >> waitForProcess ph

-- | Runs the client script against both builds and expects the same answers.
sameUnderBoth :: [String] -> (Int -> IO [Seen]) -> IO ()
sameUnderBoth args script = do
  hs <- binary "WARPCORE_DROPIN_HS" "../../build/dropin-hs"
  warp <- binary "WARPCORE_DROPIN_WARP" "../../build/dropin-warp"
  ours <- withBuild hs args script
  theirs <- withBuild warp args script
  ours `shouldBe` theirs

-- | An HTTP exchange, with the fields that differ by design left out.
exchange' :: Int -> B.ByteString -> B.ByteString -> [H.Header] -> L.ByteString -> IO Seen
exchange' port method path hs body = do
  r <- request port method path hs body
  let st = responseStatus r
      -- Date and Server differ by design, framing fields by how each sends
      -- a stream; ETag because the library's file answers carry one (and
      -- answer If-None-Match) where Warp's have none (bindings/haskell/README.md).
      keep (n, _) = CI.foldedCase n `notElem` ["date", "server", "transfer-encoding", "content-length", "connection", "etag"]
  pure (Seen (H.statusCode st) (H.statusMessage st) (sort [(CI.foldedCase n, v) | (n, v) <- responseHeaders r, keep (n, v)]) (responseBody r))

-- | The status line and body of a raw exchange (bytes http-client cannot send).
rawSeen :: Int -> B.ByteString -> IO Seen
rawSeen port bytes = do
  got <- rawExchange port bytes (const False)
  let (line, rest) = B.breakSubstring "\r\n" got
      body = snd (B.breakSubstring "\r\n\r\n" rest)
  pure (Seen 0 line [] (L.fromStrict (B.drop 4 body)))

spec :: Spec
spec = describe "five WAI applications built against Warp and against warpcore" $ do
  it "Scotty: routes, captures, JSON bodies, a status of its own, 404s" $ bounded $
    sameUnderBoth ["scotty"] $ \port ->
      sequence
        [ exchange' port "GET" "/hello/world" [] ""
        , exchange' port "GET" "/hello/%C3%A9t%C3%A9" [] ""
        , exchange' port "POST" "/length" [] (L.replicate 5000 7)
        , exchange' port "GET" "/teapot" [] ""
        , exchange' port "GET" "/query?n=21" [] ""
        , exchange' port "GET" "/nowhere" [] ""
        , exchange' port "DELETE" "/hello/x" [] ""
        ]

  it "wai-app-static: files, types, ETags, conditional requests, index, 404" $ bounded $ do
    root <- maybe "../.." id <$> lookupEnv "WARPCORE_ROOT"
    sameUnderBoth ["static", root ++ "/examples/www"] $ \port -> do
      first <- exchange' port "GET" "/style.css" [] ""
      let Seen _ _ fields _ = first
          etag = maybe "" id (lookup "etag" fields)
      rest <-
        sequence
          [ exchange' port "GET" "/style.css" [("If-None-Match", etag)] ""
          , exchange' port "GET" "/" [] ""
          , exchange' port "GET" "/img/logo.png" [] ""
          , exchange' port "HEAD" "/data.json" [] ""
          , exchange' port "GET" "/missing.txt" [] ""
          , exchange' port "GET" "/../Makefile" [] ""
          ]
      pure (first : rest)

  it "wai-extra: gzip, autohead and request logging middleware" $ bounded $
    sameUnderBoth ["extra"] $ \port ->
      sequence
        [ exchange' port "GET" "/big" [("Accept-Encoding", "gzip")] ""
        , exchange' port "GET" "/big" [] ""
        , exchange' port "GET" "/small" [("Accept-Encoding", "gzip")] ""
        , exchange' port "HEAD" "/big" [] ""
        , exchange' port "GET" "/other" [] ""
        ]

  it "wai-websockets: an echo over responseRaw, and the fallback" $ bounded $
    sameUnderBoth ["websockets"] $ \port -> do
      echoed <- WS.runClient "127.0.0.1" port "/" $ \conn -> do
        forM ["one", "two", B8.replicate 100000 'x'] $ \msg -> do
          WS.sendBinaryData conn msg
          WS.receiveData conn
      fallback <- exchange' port "GET" "/" [] ""
      pure (fallback : [Seen 0 "" [] (L.fromStrict m) | m <- echoed])

  it "a plain application: streamed bodies, responseStream, responseRaw, pauseTimeout, statusMessage, remoteHost" $ boundedFor 120 $
    sameUnderBoth ["stream"] $ \port -> do
      let big = L.concat (replicate 40 (L.replicate 100000 3))
      plain <-
        sequence
          [ exchange' port "POST" "/sha256" [] big
          , exchange' port "POST" "/echo" [] big
          , exchange' port "GET" "/status" [] ""
          , exchange' port "GET" "/slow" [] ""
          , exchange' port "GET" "/peer" [] ""
          , exchange' port "GET" "/stream" [] ""
          ]
      raw <- rawSeen port "GET /raw HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: shout\r\n\r\nhello"
      -- A client that leaves mid-body: the server goes on.
      replicateM_ 3 $ bracket (rawConnect port) NS.close $ \s ->
        NSB.sendAll s "POST /sha256 HTTP/1.1\r\nHost: t\r\nContent-Length: 5000000\r\n\r\nonly this"
      after <- exchange' port "GET" "/peer" [] ""
      pure (plain ++ [raw, after])
