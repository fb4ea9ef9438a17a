package generation

import "time"

// Action is what a Job asks of the workers.
type Action string

// The actions of `ragpipe reindex`.
const (
	// Build creates the next generation with Job.Target's settings, copies
	// every document of Serving into it, checks it and switches to it.
	Build Action = "build"
	// Rollback switches back to Previous (Serving becomes Previous).
	Rollback Action = "rollback"
	// DropPrevious deletes Previous.
	DropPrevious Action = "drop-previous"
	// Abort stops a Build and deletes Building.
	Abort Action = "abort"
	// Switch checks Building, left Ready by a Build with NoSwitch, again
	// and switches to it.
	Switch Action = "switch"
)

// Phase is how far a Job has come.
type Phase string

// The phases of a Job.
const (
	Waiting   Phase = "waiting"   // no worker has taken it yet
	Creating  Phase = "creating"  // creating the building generation
	Copying   Phase = "copying"   // copying Serving's documents into Building
	Checking  Phase = "checking"  // comparing the generations
	Switching Phase = "switching" // switching Serving and the alias
	Done      Phase = "done"
	Failed    Phase = "failed" // Error says why; a Build's Building is kept
	// Ready ends a Build with NoSwitch: Building is built and checked,
	// kept and written by every worker until a Switch or an Abort job.
	Ready Phase = "ready"
)

// Job is a `ragpipe reindex` request and its progress, carried out by one
// worker at a time (Owner, renewed by Heartbeat; another worker takes it
// over once the heartbeat is older than a lease).
type Job struct {
	ID     string `json:"id"`
	Action Action `json:"action"`
	// Target is the next generation's settings (Build); its Name and
	// Number are chosen by the worker that creates it. For Abort and
	// DropPrevious it is the generation being dropped, once taken out of
	// the State.
	Target *Generation `json:"target,omitempty"`
	// Given names the settings of Target the request set (the Set*
	// constants); the others are Serving's, filled in by the worker that
	// creates the generation (see Fill).
	Given []string `json:"given,omitempty"`
	// NoSwitch stops a Build once Building is checked, in phase Ready,
	// for a Switch job to switch at the moment the operator chooses.
	NoSwitch bool  `json:"no_switch,omitempty"`
	Phase    Phase `json:"phase"`

	Owner     string    `json:"owner,omitempty"`
	Heartbeat time.Time `json:"heartbeat,omitzero"`

	// Cursor is where the copy resumes; opaque to all but the copier.
	Cursor string `json:"cursor,omitempty"`
	// Total is the number of points of Serving when the copy began;
	// Copied the documents and Points the points of Serving copied so far.
	Total  int64 `json:"total,omitempty"`
	Copied int64 `json:"copied,omitempty"`
	Points int64 `json:"points,omitempty"`

	Requested time.Time `json:"requested"`
	Started   time.Time `json:"started,omitzero"`
	Finished  time.Time `json:"finished,omitzero"`
	// Report is what the checks found (Build).
	Report *Report `json:"report,omitempty"`
	// Error says why the Job failed.
	Error string `json:"error,omitempty"`
}

// Report is what the checks before a switch found.
type Report struct {
	// Tenants compares, per tenant, the generations' documents and points.
	Tenants []TenantCount `json:"tenants"`
	// Mismatches names the first documents whose version differs between
	// the generations, that one of them lacks, or whose points in the
	// building generation are not its chunks.
	Mismatches []string `json:"mismatches,omitempty"`
	// Searches is how many sample searches the building generation was
	// asked; Answered how many found the document they were made from.
	Searches int `json:"searches"`
	Answered int `json:"answered"`
	// SwitchTook is how long the switch took, from the State's update to
	// the alias'.
	SwitchTook time.Duration `json:"switch_took,omitempty"`
}

// TenantCount is one tenant's documents and points in the serving (From)
// and building (To) generations.
type TenantCount struct {
	UserID     string `json:"user_id"`
	FromDocs   int    `json:"from_docs"`
	ToDocs     int    `json:"to_docs"`
	FromPoints int    `json:"from_points"`
	// ToPoints and ToChunks are the points and the sum of the chunk counts
	// of To's documents the check compared (those written meanwhile left
	// out); equal unless a document's points are not its chunks.
	ToPoints int `json:"to_points"`
	ToChunks int `json:"to_chunks"`
}

// The settings of a Build's Target, as Job.Given names them.
const (
	SetEmbedder     = "embedder"
	SetDims         = "dims"
	SetDistance     = "distance"
	SetChunkSize    = "chunk_size"
	SetChunkOverlap = "chunk_overlap"
	SetShards       = "shards"
	SetReplication  = "replication_factor"
)

// Fill returns target with the settings given does not name taken from
// serving. Dims left unnamed is serving's when the embedder profile is
// serving's too, else 0: the new embedder's own, which only a process with
// that profile knows. Name and Number are left as they are.
func Fill(target Generation, given []string, serving Generation) Generation {
	set := make(map[string]bool, len(given))
	for _, g := range given {
		set[g] = true
	}
	g := target
	if !set[SetEmbedder] {
		g.Embedder = serving.Embedder
	}
	if !set[SetDims] {
		g.Dims = 0
		if g.Embedder == serving.Embedder {
			g.Dims = serving.Dims
		}
	}
	if !set[SetDistance] {
		g.Distance = serving.Distance
	}
	if !set[SetChunkSize] {
		g.ChunkSize = serving.ChunkSize
	}
	if !set[SetChunkOverlap] {
		g.ChunkOverlap = serving.ChunkOverlap
	}
	if !set[SetShards] {
		g.Shards = serving.Shards
	}
	if !set[SetReplication] {
		g.ReplicationFactor = serving.ReplicationFactor
	}
	return g
}

// SameSettings reports whether a and b make the same points in the same
// layout: everything but Name and Number is equal.
func SameSettings(a, b Generation) bool {
	a.Name, a.Number, b.Name, b.Number = "", 0, "", 0
	return a == b
}

// Active reports whether j is still to be carried out: neither done,
// failed nor ready.
func (j *Job) Active() bool {
	return j != nil && j.Phase != Done && j.Phase != Failed && j.Phase != Ready
}
