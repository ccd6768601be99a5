from hsicls.cli.main import main

main()
