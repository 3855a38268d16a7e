-- | The warpcore package's tests: hspec prints "N examples, 0 failures".
module Main (main) where

import Test.Hspec

import qualified DemoSpec
import qualified HeaderSpec
import qualified RawSpec
import qualified ServerSpec
import qualified WaiSpec

main :: IO ()
main = hspec $ do
  HeaderSpec.spec
  RawSpec.spec
  ServerSpec.spec
  WaiSpec.spec
  DemoSpec.spec
