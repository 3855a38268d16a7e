-- | The drop-in's list (test/Exports.hs, which imports every name from
-- Network.Wai.Handler.WarpCore with Warp's type, and so does not build when
-- one is missing) covers every export of the installed Warp, read from its
-- interface file with @ghc --show-iface@ at test time.
module ExportsSpec (spec) where

import Data.Char (isUpper)
import Data.List (sort, nub)
import System.FilePath ((</>))
import System.Process (readProcess)
import Test.Hspec

import Exports (warpNames)

-- | The names in the @exports:@ section of an interface dump: plain names,
-- qualified ones, and types with their constructors and fields in braces.
exportedNames :: String -> [String]
exportedNames dump = nub (concatMap names section)
  where
    section = takeWhile ("  " `isPrefixOfStr`) (drop 1 (dropWhile (/= "exports:") (lines dump)))
    names line = map unqualify (words (map (\c -> if c == '{' || c == '}' then ' ' else c) line))
    -- Network.Wai.Handler.Warp.Types.InvalidRequest -> InvalidRequest
    unqualify w = case break (== '.') w of
      (m@(c : _), '.' : rest) | isUpper c, not (null rest), not (null m) -> unqualify rest
      _ -> w
    isPrefixOfStr p s = take (length p) s == p

spec :: Spec
spec = describe "Network.Wai.Handler.WarpCore as a drop-in for Warp" $
  it "exports every name of the installed Warp's Network.Wai.Handler.Warp (test/Exports.hs checks the types)" $ do
    dirs <- lines <$> readProcess "ghc-pkg" ["field", "warp", "import-dirs", "--simple-output"] ""
    let hi = head (words (concat dirs)) </> "Network" </> "Wai" </> "Handler" </> "Warp.hi"
    dump <- readProcess "ghc" ["--show-iface", hi] ""
    let exported = exportedNames dump
    length exported `shouldSatisfy` (> 60)
    sort (filter (`notElem` warpNames) exported) `shouldBe` []
