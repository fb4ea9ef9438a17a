package bench

import (
	"context"
	"errors"
	"fmt"
)

// pinned runs the pinned stage: Qdrant alone on one CPU, everything else
// (this process with its publisher and embedded NATS server, and the
// worker) on another, so that neither side takes CPU from the other. It runs
// the ceiling grid, then the vector_b64, vector and text drains, each
// against that ceiling and each followed by the same drain from a stream
// filled before its worker starts (ingestFilled). The CPUs are given back
// when it returns.
func (r *runner) pinned(ctx context.Context) (*Pinned, error) {
	res := &Pinned{}
	if r.cfg.QdrantPID == 0 {
		return res, errors.New("needs the Qdrant process the bench starts (not --qdrant-url)")
	}
	cpus, err := allowedOf(0)
	if err != nil {
		return res, err
	}
	if len(cpus) < 2 {
		return res, fmt.Errorf("needs 2 CPUs, this process may use %v", cpus)
	}
	res.QdrantCPUs, res.OtherCPUs = cpus[:1], cpus[1:2]
	qdrantCPUs, err := allowedOf(r.cfg.QdrantPID)
	if err != nil {
		return res, err
	}
	defer func() {
		r.pinOthers = nil
		for pid, cpus := range map[int][]int{0: cpus, r.cfg.QdrantPID: qdrantCPUs} {
			if err := pinCPUs(pid, cpus); err != nil {
				r.progressf("pinned: give CPUs back: %v", err)
			}
		}
	}()
	if err := pinCPUs(r.cfg.QdrantPID, res.QdrantCPUs); err != nil {
		return res, err
	}
	if err := pinCPUs(0, res.OtherCPUs); err != nil {
		return res, err
	}
	r.pinOthers = res.OtherCPUs
	r.progressf("pinned: Qdrant on CPU %v; this process (publisher, NATS) and the worker on CPU %v", res.QdrantCPUs, res.OtherCPUs)

	if res.Ceiling, err = r.ceiling(ctx, "pinned_ceiling"); err != nil {
		return res, fmt.Errorf("ceiling: %w", err)
	}
	var failed []error
	for _, d := range []struct {
		drain
		out, backlog **Ingest
	}{
		{drain{name: "pinned_vector_b64", body: bodyVectorB64, embedder: embedderHash, oneChunk: true}, &res.VectorsB64, &res.VectorsB64Backlog},
		{drain{name: "pinned_vectors", body: bodyVector, embedder: embedderHash, oneChunk: true}, &res.Vectors, &res.VectorsBacklog},
		{drain{name: "pinned_text", body: bodyText, embedder: embedderHash, oneChunk: true}, &res.Text, &res.TextBacklog},
	} {
		d.docs = r.cfg.Docs
		in, err := r.ingest(ctx, d.drain, res.Ceiling)
		*d.out = in
		if err != nil {
			in.Error = err.Error()
			return res, errors.Join(append(failed, fmt.Errorf("%s: %w", d.name, err))...)
		}
		// The same events from a filled stream; its failure leaves the
		// drains after it to run.
		filled := d.drain
		filled.name += "_backlog"
		in, err = r.ingestFilled(ctx, filled, res.Ceiling)
		*d.backlog = in
		if err != nil {
			in.Error = err.Error()
			failed = append(failed, fmt.Errorf("%s: %w", filled.name, err))
			if ctx.Err() != nil {
				break
			}
		}
	}
	return res, errors.Join(failed...)
}
