-- | Cabal's simple build, plus: when no --extra-lib-dirs / --extra-include-dirs
-- are given, the repository's own build (../../target/release, ../../include)
-- is used, as absolute paths; and every extra library directory is added to
-- the run-time search path (-Wl,-rpath), so that a program built elsewhere
-- with `ghc -threaded -package warpcore` finds libwarpcore.so.
-- WARPCORE_LIB_DIR and WARPCORE_INCLUDE_DIR override the defaults.
import Distribution.PackageDescription
import Distribution.Simple
import Distribution.Simple.LocalBuildInfo (LocalBuildInfo (..))
import Distribution.Simple.Setup (ConfigFlags (..))
import System.Directory (canonicalizePath, makeAbsolute)
import System.Environment (lookupEnv)
import System.FilePath ((</>))

main :: IO ()
main = defaultMainWithHooks simpleUserHooks {confHook = configure}

configure :: (GenericPackageDescription, HookedBuildInfo) -> ConfigFlags -> IO LocalBuildInfo
configure pkg flags = do
  libDir <- lookupEnv "WARPCORE_LIB_DIR" >>= maybe (makeAbsolute ("../.." </> "target" </> "release")) makeAbsolute
  incDir <- lookupEnv "WARPCORE_INCLUDE_DIR" >>= maybe (makeAbsolute ("../.." </> "include")) makeAbsolute
  let libDirs = if null (configExtraLibDirs flags) then [libDir] else configExtraLibDirs flags
      incDirs = if null (configExtraIncludeDirs flags) then [incDir] else configExtraIncludeDirs flags
  absLibDirs <- mapM canonicalizePath libDirs
  absIncDirs <- mapM canonicalizePath incDirs
  let flags' = flags {configExtraLibDirs = absLibDirs, configExtraIncludeDirs = absIncDirs}
  lbi <- confHook simpleUserHooks pkg flags'
  let rpath = emptyBuildInfo {ldOptions = ["-Wl,-rpath," ++ d | d <- absLibDirs]}
      pd = localPkgDescr lbi
      addTo bi = bi <> rpath
      pd' =
        pd
          { library = fmap (\l -> l {libBuildInfo = addTo (libBuildInfo l)}) (library pd)
          , testSuites = map (\t -> t {testBuildInfo = addTo (testBuildInfo t)}) (testSuites pd)
          , executables = map (\e -> e {buildInfo = addTo (buildInfo e)}) (executables pd)
          }
  pure lbi {localPkgDescr = pd'}
