// Where llama.cpp's shared libraries are, as for the app's binaries (the same build script).
include!("../app/build.rs");
