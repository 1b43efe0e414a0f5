// Package examples embeds the example projects shipped with Kiln, so that
// commands (kiln demo) and tests can use them without reading files from the
// working directory. Each project is also a file under examples/ that users
// can copy and edit.
package examples

import _ "embed"

// FeedProject is the project file of the reference workload RW1 (feed
// ranking): entities user and post, the push source engagements, the views
// user_engagement (12 served features) and post_engagement (19), and the
// services user_profile and ranking.
//
//go:embed feed/kiln.yaml
var FeedProject []byte

// FeedProjectName is the path of FeedProject in the repository, for
// messages.
const FeedProjectName = "examples/feed/kiln.yaml"
