"""The whole curate → annotate → train → evaluate loop on the demo, driven through the operators."""
