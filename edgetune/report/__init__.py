"""What a run tells its user: the choice table on the terminal (`choice`), the closing summary
(`summary`), `edgetune info` (`info`) and the HTML report (`html`). Torch-free."""
