package projectfile

import (
	"fmt"
	"slices"
	"strings"

	"github.com/goccy/go-yaml/ast"

	"github.com/kiln-dev/kiln/internal/definition"
)

func (l *loader) services(p *definition.Project, e keyValue) {
	entries, ok := l.mapping(e.val, e.kpos, "services", "{user_profile: {views: [user_engagement]}}")
	if !ok {
		return
	}
	viewNames := namesOf(p.Views, func(v *definition.View) string { return v.Name })
	for _, se := range entries {
		svc := &definition.Service{Name: se.key}
		p.Services = append(p.Services, svc)
		what, kv, ok := l.declaration(se, "service", "{views: [user_engagement]}")
		if !ok {
			continue
		}
		// served name -> where it was added
		added := map[string]string{}
		listed := 0
		for _, ke := range kv {
			switch ke.key {
			case "views":
				items, ok := l.list(ke.val, "views of "+what, "[user_engagement]")
				if !ok {
					continue
				}
				listed += len(items)
				seenView := map[string]pos{}
				for _, it := range items {
					name, np, ok := l.scalar(it, ke.kpos, "view of "+what, "user_engagement")
					if !ok || !l.resolve("view", name, np, viewNames) {
						continue
					}
					if !l.firstListing(seenView, "view", name, np, what) {
						continue
					}
					for _, ref := range p.View(name).Outputs() {
						l.addRef(svc, ref, added, np, fmt.Sprintf("via view %q at %v", name, np), what)
					}
				}
			case "features":
				items, ok := l.list(ke.val, "features of "+what, "[user_engagement:views_1h]")
				if !ok {
					continue
				}
				listed += len(items)
				for _, it := range items {
					text, np, ok := l.servedName(it, ke.kpos, what)
					if !ok {
						continue
					}
					ref, ok := l.findServed(p, viewNames, text, np, what)
					if !ok {
						continue
					}
					l.addRef(svc, ref, added, np, "at "+np.String(), what)
				}
			default:
				l.keys([]keyValue{ke}, what, "features", "views")
			}
		}
		if listed == 0 {
			l.errorf(se.kpos, "%s lists no features: add views: [a view] to serve all of a view, or features: [view:feature_window]", what)
		}
	}
}

// addRef adds ref to svc unless it is already there.
func (l *loader) addRef(svc *definition.Service, ref definition.FeatureRef, added map[string]string, p pos, from, what string) {
	name := ref.Name()
	if first, dup := added[name]; dup {
		l.errorf(p, "feature %q is listed twice in %s (first %s): remove one", name, what, first)
		return
	}
	added[name] = from
	svc.Features = append(svc.Features, ref)
}

// servedName reads a served name from a services features list. The YAML
// parser reads view:feature in a flow list as a one-keyValue mapping; accept it
// when it is written with no space around the colon.
func (l *loader) servedName(n ast.Node, at pos, what string) (string, pos, bool) {
	if text, kp, pair, ok := colonPair(n, plainString); pair {
		if ok {
			return text, kp, true
		}
		l.errorf(posOf(n), "features of %s: write each served name as view:feature_window with no spaces, like user_engagement:views_1h", what)
		return "", posOf(n), false
	}
	return l.scalar(n, at, "feature of "+what, "user_engagement:views_1h")
}

// findServed resolves a served name "view:feature[_window]".
func (l *loader) findServed(p *definition.Project, viewNames []string, text string, np pos, what string) (definition.FeatureRef, bool) {
	viewName, short, ok := strings.Cut(text, ":")
	if !ok {
		var matches []string
		for _, v := range p.Views {
			for _, ref := range v.Outputs() {
				if ref.Name() == v.Name+":"+text {
					matches = append(matches, ref.Name())
				}
			}
		}
		hint := "like user_engagement:views_1h"
		if len(matches) > 0 {
			hint = "like " + strings.Join(matches, " or ")
		}
		l.errorf(np, "feature %q in %s: write view:feature_window, %s", clip(text), what, hint)
		return definition.FeatureRef{}, false
	}
	if !slices.Contains(viewNames, viewName) {
		l.errorf(np, "feature %q in %s: view %q is not defined (%sdefined: %s)", clip(text), what, clip(viewName), didYouMean(viewName, viewNames), orNone(viewNames))
		return definition.FeatureRef{}, false
	}
	v := p.View(viewName)
	var shorts []string
	for _, ref := range v.Outputs() {
		if ref.Name() == text {
			return ref, true
		}
		shorts = append(shorts, strings.TrimPrefix(ref.Name(), viewName+":"))
	}
	hint := ""
	if s := didYouMean(short, shorts); s != "" {
		hint = strings.Replace(s, `"`, `"`+viewName+":", 1)
	}
	l.errorf(np, "feature %q in %s: view %q serves no %q (%sits served names: %s)", clip(text), what, viewName, clip(short), hint, orNone(shorts))
	return definition.FeatureRef{}, false
}
