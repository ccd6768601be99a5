from hsicls.cli.commands import main

main()
