"""Split protocols, metrics, the Olofsson et al. 2014 assessment, band agreement of scenes."""
