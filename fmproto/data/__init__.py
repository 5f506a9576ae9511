"""Getting and checking the data: downloads, the IDX and CSV readers, duplicates, the validation split."""
