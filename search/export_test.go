package search

// CPUTime gives the external test package the process's CPU time.
var CPUTime = cpuTime
