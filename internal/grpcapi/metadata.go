package grpcapi

import (
	"context"
	"encoding/json"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/metadata"
	"github.com/kiln-dev/kiln/internal/tile"
	kilnv1 "github.com/kiln-dev/kiln/proto/kiln/v1"
)

// GetMetadata serves kiln.v1.FeatureService/GetMetadata: the project's
// description (package metadata), the same as GET /v1/metadata.
func (s *Server) GetMetadata(ctx context.Context, in *kilnv1.GetMetadataRequest) (resp *kilnv1.GetMetadataResponse, err error) {
	defer s.traceFailure(ctx, &err)
	defer s.recoverPanic("GetMetadata", &err)
	s.metadataOnce.Do(func() {
		p := s.engine.Project()
		plans, err := tile.CompileProject(p)
		if err != nil {
			s.metadataErr = status.Error(codes.Internal, "describing the project: "+err.Error())
			return
		}
		s.metadata = metadataMessage(metadata.Describe(p, plans))
	})
	if s.metadataErr != nil {
		return nil, s.metadataErr
	}
	// A copy: an in-process caller may change what it is handed, and the
	// next call must not see that.
	return proto.Clone(s.metadata).(*kilnv1.GetMetadataResponse), nil
}

// metadataMessage converts a project's description into its message.
func metadataMessage(d *metadata.Project) *kilnv1.GetMetadataResponse {
	typed := func(fs []metadata.Field) []*kilnv1.KeyField {
		out := make([]*kilnv1.KeyField, len(fs))
		for i, f := range fs {
			t, _ := event.ParseType(f.Type)
			out[i] = &kilnv1.KeyField{Name: f.Name, Type: valueType(t)}
		}
		return out
	}
	m := &kilnv1.GetMetadataResponse{Project: d.Name}
	for _, e := range d.Entities {
		m.Entities = append(m.Entities, &kilnv1.MetadataEntity{Name: e.Name, Keys: typed(e.Keys)})
	}
	for _, src := range d.Sources {
		m.Sources = append(m.Sources, &kilnv1.MetadataSource{Name: src.Name, Type: src.Type, EventTime: src.EventTime, Fields: typed(src.Fields)})
	}
	for _, v := range d.Views {
		mv := &kilnv1.MetadataView{Name: v.Name, Entity: v.Entity, Source: v.Source, Plan: &kilnv1.MetadataPlan{
			RowBytesEmpty: int64(v.Plan.RowBytesEmpty), RowBytesFull: int64(v.Plan.RowBytesFull), LateHorizon: v.Plan.LateHorizon,
		}}
		for _, f := range v.Features {
			mf := &kilnv1.MetadataFeature{Name: f.Name, Agg: f.Agg, Field: f.Field, Windows: f.Windows}
			for _, w := range f.Where {
				mw := &kilnv1.MetadataFilter{Field: w.Field}
				for _, val := range w.Values {
					mw.ValuesJson = append(mw.ValuesJson, jsonLiteral(val))
				}
				mf.Where = append(mf.Where, mw)
			}
			mv.Features = append(mv.Features, mf)
		}
		for _, o := range v.Served {
			t, _ := event.ParseType(o.Type)
			mv.Served = append(mv.Served, &kilnv1.MetadataServed{Name: o.Name, Type: valueType(t), Feature: o.Feature, Agg: o.Agg, Window: o.Window})
		}
		for _, l := range v.Plan.Levels {
			mv.Plan.Levels = append(mv.Plan.Levels, &kilnv1.MetadataLevel{
				Window: l.Window, TileSize: l.TileSize, TilesRead: l.TilesRead, CoversMin: l.CoversMin, CoversMax: l.CoversMax,
				MaxDeviation: l.MaxDeviation, Features: l.Features,
			})
		}
		m.Views = append(m.Views, mv)
	}
	for _, svc := range d.Services {
		m.Services = append(m.Services, &kilnv1.MetadataService{Name: svc.Name, Features: svc.Features, Entities: svc.Entities})
	}
	return m
}

// jsonLiteral spells a filter value as JSON does.
func jsonLiteral(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "null"
	}
	return string(b)
}
