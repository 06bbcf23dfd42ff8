// The overlays here are fragments of example.com/homelabping (they compile
// only once copied over the app); this file keeps them out of the Runway
// module's ./... patterns.
module example.com/homelabping-changes

go 1.26.8
