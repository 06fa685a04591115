"""Training data: the bundled datasets, how a job's rows are split over trainers (partitioners),
what a job's data is (datainfo) and the push that puts a dataset on a job's topics (datapush)."""
