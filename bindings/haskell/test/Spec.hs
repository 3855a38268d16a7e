-- | The warpcore package's tests: hspec prints "N examples, 0 failures".
module Main (main) where

import System.Environment (getArgs, lookupEnv)
import Test.Hspec

import qualified BodySpec
import Child (runChildScenario)
import qualified DemoSpec
import qualified DropInSpec
import qualified ExportsSpec
import qualified HeaderSpec
import qualified ListenSpec
import qualified RawSpec
import qualified SafetySpec
import qualified ServerSpec
import qualified TLSSpec
import qualified UpgradeSpec
import qualified WaiSpec
import qualified WarpSettingsSpec

main :: IO ()
main = do
  -- Util.runChild runs this binary again as one of the Child scenarios.
  child <- lookupEnv "WARPCORE_HS_CHILD"
  case child of
    Just name -> getArgs >>= runChildScenario name
    Nothing -> tests

tests :: IO ()
tests = hspec $ do
  HeaderSpec.spec
  ExportsSpec.spec
  RawSpec.spec
  ServerSpec.spec
  WaiSpec.spec
  WarpSettingsSpec.spec
  ListenSpec.spec
  BodySpec.spec
  UpgradeSpec.spec
  SafetySpec.spec
  DemoSpec.spec
  DropInSpec.spec
  TLSSpec.spec
