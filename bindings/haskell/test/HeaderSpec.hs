-- | Every function declared in include/warpcore.h has a foreign import in
-- Network.WarpCore.Raw (and the binding imports nothing the header lacks).
module HeaderSpec (spec) where

import Data.Char (isAlphaNum)
import Data.List (isPrefixOf, nub, sort, tails)
import System.Environment (lookupEnv)
import System.FilePath ((</>))
import Test.Hspec

-- The names of functions declared in the header: an identifier starting with
-- warpcore_ followed by '(' on a line that is not a comment or a typedef.
headerFunctions :: String -> [String]
headerFunctions text =
  nub
    [ name
    | line <- lines text
    , not ("//" `isPrefixOf` dropWhile (== ' ') line)
    , not ("typedef" `isPrefixOf` line)
    , (name, rest) <- identifiers line
    , "warpcore_" `isPrefixOf` name
    , "(" `isPrefixOf` rest
    ]

identifiers :: String -> [(String, String)]
identifiers s =
  [ (name, rest)
  | (prev, t) <- zip (' ' : s) (tails s)
  , not (isIdent prev)
  , let name = takeWhile isIdent t
  , not (null name)
  , let rest = drop (length name) t
  ]
  where
    isIdent c = isAlphaNum c || c == '_'

-- The C names in `foreign import ccall [safe|unsafe] "[&]name"` lines.
importedNames :: String -> [String]
importedNames text =
  nub
    [ takeWhile (/= '"') (dropWhile (== '&') quoted)
    | line <- lines text
    , "foreign import ccall" `isPrefixOf` line
    , let quoted = drop 1 (dropWhile (/= '"') line)
    , "warpcore_" `isPrefixOf` dropWhile (== '&') quoted
    ]

spec :: Spec
spec = describe "include/warpcore.h" $ do
  it "has every function imported by Network.WarpCore.Raw" $ do
    root <- maybe "../.." id <$> lookupEnv "WARPCORE_ROOT"
    header <- readFile (root </> "include" </> "warpcore.h")
    raw <- readFile (root </> "bindings" </> "haskell" </> "src" </> "Network" </> "WarpCore" </> "Raw.hsc")
    let declared = headerFunctions header
        imported = filter (not . ("warpcore_hs_" `isPrefixOf`)) (importedNames raw)
    length declared `shouldSatisfy` (>= 30)
    filter (`notElem` imported) declared `shouldBe` []
    sort (filter (`notElem` declared) imported) `shouldBe` []
