// Package kilnv1 is the Go code generated from kiln.proto, Kiln's gRPC API:
// kiln.v1.FeatureService (GetFeatures, Prepare) for reading features, and
// kiln.v1.Diagnostics (GetRows) for the store's raw rows. docs/grpc.md says
// how to call it; scripts/gen-proto.sh regenerates the code after an edit of
// kiln.proto. Most Go callers want package client, built on it.
package kilnv1
