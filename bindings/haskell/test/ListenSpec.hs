{-# LANGUAGE OverloadedStrings #-}
{-# LANGUAGE ScopedTypeVariables #-}
-- | Where the WAI handler listens, as Warp: runSettingsSocket on a TCP or
-- Unix socket the test opened, setHost's preferences against Warp's own
-- binder (streaming-commons' bindPortTCP), and examples/haskell/Listen.hs
-- built against Warp and against warpcore (WARPCORE_LISTEN_WARP,
-- WARPCORE_LISTEN_HS) answering alike.
module ListenSpec (spec) where

import Control.Concurrent
import Control.Concurrent.Async (Async, race, wait, withAsync)
import Control.Exception
import Control.Monad (forM_, unless, when)
import qualified Data.ByteString as B
import qualified Data.ByteString.Lazy.Char8 as L8
import Data.List (intercalate, isPrefixOf)
import Data.Streaming.Network (bindPath, bindPortTCP)
import Data.String (fromString)
import Foreign.C.Error (Errno (..), eCONNREFUSED)
import GHC.IO.Exception (IOException (..))
import qualified Network.HTTP.Types as H
import Network.Socket (Family (..), SockAddr (..), SocketType (..))
import qualified Network.Socket as NS
import qualified Network.Socket.ByteString as NSB
import Network.Wai (Application, pathInfo, remoteHost, responseLBS)
import Numeric (readHex)
import System.Directory (createDirectoryIfMissing, doesFileExist, getTemporaryDirectory, listDirectory, removeDirectoryRecursive)
import System.Environment (lookupEnv)
import System.Exit (ExitCode (..))
import System.FilePath ((</>))
import System.IO (hGetLine)
import System.Posix.Process (getProcessID)
import System.Process
import System.Timeout (timeout)
import Test.Hspec

import qualified Network.WarpCore as WC
import qualified Network.WarpCore.Raw as Raw
import Network.Wai.Handler.WarpCore
import Util (bounded, readUntilClosed)

spec :: Spec
spec = describe "Network.Wai.Handler.WarpCore listening" $ do
  describe "runSettingsSocket" $ do
    it "serves a TCP socket the program opened; killed, it leaves it open and listening, to be served again" $ bounded $
      bracket openFreePort (NS.close . snd) $ \(port, sock) -> do
        let at = loopback4 port
        withRunning defaultSettings (\st -> runSettingsSocket st sock (hello Nothing)) $ \p _ -> do
          p `shouldBe` port
          (bodyOf <$> httpGet at "/") `shouldReturn` Just "hello 127.0.0.1"
        -- The thread was killed (the server stopped without grace): the
        -- socket is still the program's, open and listening.
        fd <- NS.unsafeFdSocket sock
        fd `shouldSatisfy` (>= 0)
        Raw.c_warpcore_hs_socket_listens fd `shouldReturn` 1
        -- A client that connects now waits in its backlog for the next server.
        bracket (connectTo at) NS.close $ \c -> do
          NSB.sendAll c (getRequest "/")
          withRunning defaultSettings (\st -> runSettingsSocket st sock (hello Nothing)) $ \_ _ ->
            (bodyOf . Just <$> readUntilClosed c) `shouldReturn` Just "hello 127.0.0.1"

    it "serves a Unix socket the program opened; the shutdown action closes it once the request in progress is answered" $ bounded $
      withTempDir $ \dir -> do
        let path = dir </> "app.sock"
            at = SockAddrUnix path
        bracket (bindPath path) NS.close $ \sock -> do
          stopVar <- newEmptyMVar
          slow <- newSlow
          let st0 = setInstallShutdownHandler (putMVar stopVar) defaultSettings
          withRunning st0 (\st -> runSettingsSocket st sock (hello (Just slow))) $ \port server -> do
            port `shouldBe` 0
            -- Warp's remoteHost for a client of a Unix socket.
            (bodyOf <$> httpGet at "/") `shouldReturn` Just (L8.pack ("hello " ++ show (SockAddrUnix "")))
            bracket (connectTo at) NS.close $ \c -> do
              NSB.sendAll c (getRequest "/slow")
              takeMVar (slowEntered slow)
              stop <- readMVar stopVar
              stop
              -- Closed, as Warp's shutdown action closes it; the server
              -- stops accepting (its duplicate closes) while the request
              -- in progress goes on.
              NS.unsafeFdSocket sock `shouldReturn` (-1)
              refusedWithin at
              putMVar (slowGate slow) ()
              (bodyOf . Just <$> readUntilClosed c) `shouldReturn` Just "slow"
            -- It returned by itself once the shutdown was over.
            wait server
          doesFileExist path `shouldReturn` True -- the program's file, as with Warp

    it "shuts the server down gracefully when the program closes the socket, as Warp does" $ bounded $
      bracket openFreePort (NS.close . snd) $ \(port, sock) -> do
        let at = loopback4 port
        slow <- newSlow
        withRunning defaultSettings (\st -> runSettingsSocket st sock (hello (Just slow))) $ \_ server ->
          bracket (connectTo at) NS.close $ \c -> do
            NSB.sendAll c (getRequest "/slow")
            takeMVar (slowEntered slow)
            NS.close sock
            refusedWithin at
            putMVar (slowGate slow) ()
            (bodyOf . Just <$> readUntilClosed c) `shouldReturn` Just "slow"
            wait server
        httpGet at "/" `shouldReturn` Nothing

    it "refuses a socket that does not listen, leaving it the program's, and throws for a closed one" $ bounded $ do
      sock <- NS.socket AF_INET Stream NS.defaultProtocol
      flip finally (NS.close sock) $ do
        opened <- openDescriptors
        refused <- try (runSettingsSocket defaultSettings sock (hello Nothing))
        case refused of
          Left e -> WC.errorResult e `shouldBe` Raw.resultInvalidAddress
          Right () -> expectationFailure "served a socket that does not listen"
        -- The duplicate handed to the library was closed again.
        openDescriptors `shouldReturn` opened
        NS.bind sock (SockAddrInet 0 (NS.tupleToHostAddress (127, 0, 0, 1)))
        NS.listen sock 16
        port <- fromIntegral <$> NS.socketPort sock
        withRunning defaultSettings (\st -> runSettingsSocket st sock (hello Nothing)) $ \_ _ ->
          (bodyOf <$> httpGet (loopback4 port) "/") `shouldReturn` Just "hello 127.0.0.1"
      closed <- try (runSettingsSocket defaultSettings sock (hello Nothing))
      case closed of
        Left (_ :: IOException) -> pure ()
        Right () -> expectationFailure "served a closed socket"

  describe "setHost binds what Warp's bindPortTCP binds (reached over 127.0.0.1, ::1)" $ do
    forM_ preferences $ \(host, expected) ->
      it (show host ++ maybe "" (\e -> ": " ++ showReach e) expected) $ bounded $ do
        needIPv6
        warp <- bracket (bindPortTCP 0 (fromString host)) NS.close $ \s -> do
          port <- fromIntegral <$> NS.socketPort s
          (,) <$> connects (loopback4 port) <*> connects (loopback6 port)
        ours <- withRunning (setHost (fromString host) (setPort 0 defaultSettings)) (\st -> runSettings st (hello Nothing)) $ \port _ ->
          (,) <$> answers (loopback4 port) <*> answers (loopback6 port)
        ours `shouldBe` warp
        forM_ expected (ours `shouldBe`)

    it "binds IPv4 itself, one SO_REUSEPORT socket per worker; IPv6 as Warp's one dual-stack socket" $ bounded $ do
      needIPv6
      let settings h = setWorkers 2 (setHost h (setPort 0 defaultSettings))
      withRunning (settings "*4") (\st -> runSettings st (hello Nothing)) $ \port _ ->
        listeningSockets "/proc/net/tcp" port `shouldReturn` 2
      withRunning (settings "*6") (\st -> runSettings st (hello Nothing)) $ \port _ ->
        listeningSockets "/proc/net/tcp6" port `shouldReturn` 1

  describe "examples/haskell/Listen.hs built against Warp and against warpcore" $ do
    forM_ (map fst preferences) $ \host ->
      it ("answers alike over 127.0.0.1 and ::1 with --host " ++ show host) $ bounded $ do
        needIPv6
        let run' program = do
              port <- freePort
              withProgram program ["--host", host, "--port", show port] $ \_ ->
                (,) <$> (bodyOf <$> httpGet (loopback4 port) "/") <*> (bodyOf <$> httpGet (loopback6 port) "/")
        warp <- run' "WARPCORE_LISTEN_WARP"
        ours <- run' "WARPCORE_LISTEN_HS"
        ours `shouldBe` warp
        ours `shouldSatisfy` (/= (Nothing, Nothing))

    it "answers alike on a Unix socket (runSettingsSocket), and on openFreePort's socket" $ bounded $
      withTempDir $ \dir -> do
        let path = dir </> "listen.sock"
            unix program = withProgram program ["--unix", path] $ \line -> do
              line `shouldBe` path
              bodyOf <$> httpGet (SockAddrUnix path) "/"
            tcp program = withProgram program ["--tcp-socket"] $ \line ->
              bodyOf <$> httpGet (loopback4 (read line)) "/"
        warp <- (,) <$> unix "WARPCORE_LISTEN_WARP" <*> tcp "WARPCORE_LISTEN_WARP"
        ours <- (,) <$> unix "WARPCORE_LISTEN_HS" <*> tcp "WARPCORE_LISTEN_HS"
        ours `shouldBe` warp
        fst ours `shouldBe` Just (L8.pack ("hello " ++ show (SockAddrUnix "")))
        doesFileExist path `shouldReturn` False

-- | Host preferences, with what this machine reaches for each (127.0.0.1,
-- ::1) when that does not depend on its getaddrinfo order. Warp's "*6" and
-- "!6" bind :: dual-stack (network's socket turns IPV6_V6ONLY off).
preferences :: [(String, Maybe (Bool, Bool))]
preferences =
  [ ("*4", Just (True, False))
  , ("!4", Just (True, False))
  , ("*6", Just (True, True))
  , ("!6", Just (True, True))
  , ("*", Nothing)
  , ("127.0.0.1", Just (True, False))
  , ("0.0.0.0", Just (True, False))
  , ("::1", Just (False, True))
  , ("::", Just (True, True))
  , ("localhost", Nothing)
  ]

showReach :: (Bool, Bool) -> String
showReach (v4, v6) = "127.0.0.1 " ++ word v4 ++ ", ::1 " ++ word v6
  where
    word ok = if ok then "answers" else "refused"

-- | Fails, clearly, where IPv6 is missing: these tests need ::1.
needIPv6 :: IO ()
needIPv6 = do
  r <- try (bracket (NS.socket AF_INET6 Stream NS.defaultProtocol) NS.close (\s -> NS.bind s (loopback6 0)))
  case r of
    Right () -> pure ()
    Left (e :: IOException) ->
      expectationFailure $
        "IPv6 is missing on this machine (binding [::1]:0: " ++ show e
          ++ "); the tests of setHost \"*6\" / \"!6\" need the loopback ::1 (`ip -6 addr` lists it when IPv6 is on)"

loopback4 :: Int -> SockAddr
loopback4 port = SockAddrInet (fromIntegral port) (NS.tupleToHostAddress (127, 0, 0, 1))

loopback6 :: Int -> SockAddr
loopback6 port = SockAddrInet6 (fromIntegral port) 0 (0, 0, 0, 1) 0

familyOf :: SockAddr -> Family
familyOf SockAddrInet {} = AF_INET
familyOf SockAddrInet6 {} = AF_INET6
familyOf SockAddrUnix {} = AF_UNIX

connectTo :: SockAddr -> IO NS.Socket
connectTo addr =
  bracketOnError (NS.socket (familyOf addr) Stream NS.defaultProtocol) NS.close $ \s ->
    s <$ NS.connect s addr

-- | Nothing when the connection is refused (nobody listens), else the whole
-- answer to a GET with Connection: close.
httpGet :: SockAddr -> B.ByteString -> IO (Maybe B.ByteString)
httpGet addr path = do
  r <- try (connectTo addr)
  case r of
    Left e | refusedError e -> pure Nothing
    Left e -> throwIO e
    Right s -> flip finally (NS.close s) $ do
      NSB.sendAll s (getRequest path)
      Just <$> readUntilClosed s

refusedError :: IOException -> Bool
refusedError e = ioe_errno e == Just (let Errno n = eCONNREFUSED in n)

-- | Whether a connection is accepted (by the kernel: Warp's socket is not
-- served here).
connects :: SockAddr -> IO Bool
connects addr = do
  r <- try (connectTo addr)
  case r of
    Left e | refusedError e -> pure False
    Left e -> throwIO e
    Right s -> True <$ NS.close s

-- | Whether the server answers "hello …" there (False when refused).
answers :: SockAddr -> IO Bool
answers addr = do
  r <- httpGet addr "/"
  case bodyOf r of
    Nothing -> pure False
    Just body -> do
      body `shouldSatisfy` ("hello " `L8.isPrefixOf`)
      pure True

-- | Polls (for at most 10 s) until connections to `addr` are refused.
refusedWithin :: SockAddr -> IO ()
refusedWithin addr = do
  r <- timeout (10 * 1000000) loop
  when (r == Nothing) $ expectationFailure ("connections to " ++ show addr ++ " were still accepted after 10 s")
  where
    loop = do
      accepted <- connects addr
      when accepted (threadDelay 2000 >> loop)

getRequest :: B.ByteString -> B.ByteString
getRequest path = "GET " <> path <> " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

-- | The body of a 200 answer (Nothing for none, or another status), read
-- through a chunked encoding (Warp's for responseLBS).
bodyOf :: Maybe B.ByteString -> Maybe L8.ByteString
bodyOf r = do
  answer <- r
  unless ("HTTP/1.1 200 " `B.isPrefixOf` answer) Nothing
  let (headFields, rest) = B.breakSubstring "\r\n\r\n" answer
      body = B.drop 4 rest
      chunked = "transfer-encoding: chunked" `B.isInfixOf` B.map lower headFields
  L8.fromChunks <$> (if chunked then dechunk body else Just [body])
  where
    lower c = if c >= 65 && c <= 90 then c + 32 else c
    dechunk bytes = do
      let (size, rest) = B.breakSubstring "\r\n" bytes
      n <- case readHex (L8.unpack (L8.fromStrict size)) of
        [(n, "")] -> Just n
        _ -> Nothing
      if n == 0
        then Just []
        else (B.take n (B.drop 2 rest) :) <$> dechunk (B.drop (n + 4) rest)

-- | A request to /slow tells `slowEntered` and waits for `slowGate`.
data Slow = Slow {slowEntered :: MVar (), slowGate :: MVar ()}

newSlow :: IO Slow
newSlow = Slow <$> newEmptyMVar <*> newEmptyMVar

-- | "hello " and the client's address without its port; /slow as above.
hello :: Maybe Slow -> Application
hello slow req respond = case (pathInfo req, slow) of
  (["slow"], Just s) -> do
    putMVar (slowEntered s) ()
    takeMVar (slowGate s)
    respond (responseLBS H.ok200 [] "slow")
  _ -> respond (responseLBS H.ok200 [] ("hello " <> L8.pack (client (remoteHost req))))
  where
    client (SockAddrInet _ a) = let (w, x, y, z) = NS.hostAddressToTuple a in intercalate "." (map show [w, x, y, z])
    client other = show other

-- | Runs a server (given settings that report its port) on a thread of its
-- own for the duration of an action, which gets the port and the thread;
-- the thread is killed after, if it still runs.
withRunning :: Settings -> (Settings -> IO ()) -> (Int -> Async () -> IO a) -> IO a
withRunning base serve act = do
  ready <- newEmptyMVar
  withAsync (serve (setOnReady (putMVar ready) base)) $ \server -> do
    r <- race (wait server) (takeMVar ready)
    case r of
      Left () -> fail "the server returned before it listened"
      Right port -> act port server

-- | Sockets listening on `port` in a /proc/net/tcp table.
listeningSockets :: FilePath -> Int -> IO Int
listeningSockets table port = do
  rows <- drop 1 . lines <$> readFile' table
  pure $ length [() | row <- rows, (_ : local : _ : st : _) <- [words row], st == "0A", portOf local == Just port]
  where
    portOf local = case readHex (drop 1 (dropWhile (/= ':') local)) of
      [(p, "")] -> Just p
      _ -> Nothing
    readFile' path = do
      text <- readFile path
      length text `seq` pure text

openDescriptors :: IO Int
openDescriptors = length <$> listDirectory "/proc/self/fd"

-- | A port free on both 0.0.0.0 and :: (a dual-stack socket held it).
freePort :: IO Int
freePort = bracket (NS.socket AF_INET6 Stream NS.defaultProtocol) NS.close $ \s -> do
  NS.bind s (SockAddrInet6 0 0 (0, 0, 0, 0) 0)
  fromIntegral <$> NS.socketPort s

withTempDir :: (FilePath -> IO a) -> IO a
withTempDir act = do
  tmp <- getTemporaryDirectory
  pid <- getProcessID
  let dir = tmp </> ("warpcore-hs-listen-" ++ show pid)
  bracket (createDirectoryIfMissing True dir >> pure dir) removeDirectoryRecursive act

-- | Runs the program named by the environment variable with `args` until
-- it prints "listening on X", then the action with X; then stops it with
-- SIGTERM, which must end it with exit code 0.
withProgram :: String -> [String] -> (String -> IO a) -> IO a
withProgram var args act = do
  path <- maybe (fail (var ++ " is not set (make test-haskell sets it)")) pure =<< lookupEnv var
  exists <- doesFileExist path
  unless exists $ fail (path ++ " is not built (make haskell)")
  let create = createProcess (proc path args) {std_out = CreatePipe}
      cleanup (_, _, _, ph) = terminateProcess ph >> waitForProcess ph
  bracket create cleanup $ \(_, out, _, ph) -> do
    line <- maybe (fail "no stdout") hGetLine out
    line `shouldSatisfy` ("listening on " `isPrefixOf`)
    r <- act (drop (length ("listening on " :: String)) line)
    terminateProcess ph
    waitForProcess ph `shouldReturn` ExitSuccess
    pure r
