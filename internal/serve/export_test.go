package serve

// RecentPauses is recentPauses, for the tests of package serve_test.
var RecentPauses = recentPauses
